/**
 * Validating an STS reply: RFC 8693 section 2.2.1 (success) and 2.2.2 / RFC 6749
 * section 5.2 (error). Anything that is neither is "not conformant" and rejected:
 * a token we cannot trust must never reach an Authorization header.
 */
import { StsError, StsOAuthError } from '../errors.js';
import { scrub } from '../log/redact.js';
import { jwtExpiry } from '../credentials/subject-token.js';

export interface IssuedToken {
  readonly accessToken: string;
  /** RFC 8693 section 2.2.1 `issued_token_type`. */
  readonly issuedTokenType: string;
  /** `Bearer` or `N_A` (RFC 8693 section 2.2.1), or `DPoP` (RFC 9449 section 5), as the STS spelled it. */
  readonly tokenType: string;
  /** Epoch ms when the STS was asked (the lifetime counts from there, conservatively). */
  readonly issuedAt: number;
  /** Epoch ms after which the token must not be used. */
  readonly expiresAt: number;
  readonly scope: string | undefined;
}

/** RFC 6750 section 2.1 b64token, widened to any visible ASCII: no spaces, no CR/LF (header injection). */
const HEADER_SAFE_TOKEN = /^[\x21-\x7e]+$/;

/**
 * The longest a token is kept before asking the STS again, whatever lifetime it claims
 * (issue 10 item 4): one year. Far beyond any access token a real STS issues (hours, at
 * most days), so it never shortens a sane lifetime, yet it keeps every time the cache
 * computes within Date's range, makes `expires_in: 1e308` or a JWT `exp` decades ahead
 * mean "long-lived" rather than "forever", and has the STS re-check the workload at
 * least once a year.
 */
export const MAX_TOKEN_LIFETIME_MS = 365 * 24 * 3600 * 1000;

/** Scrubs text the STS wrote before it goes into an error (the sidecar's Redactor in practice). */
export type ScrubText = (text: string, maxLength: number) => string;

export interface ResponseExpectations {
  /** The request carried a DPoP proof: `token_type: DPoP` is accepted (RFC 9449 section 5). */
  readonly dpop?: boolean;
}

export function processExchangeResponse(
  status: number,
  bodyText: string,
  requestedAt: number,
  scrubText: ScrubText = scrub,
  expect: ResponseExpectations = {},
): IssuedToken {
  if (status >= 500) {
    // The STS is in trouble, not us: a retryable condition, whatever the body says.
    throw new StsError('ERR_STS_SERVER_ERROR', `STS answered HTTP ${status}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    throw notConformant(`HTTP ${status} with a body that is not JSON`);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw notConformant(`HTTP ${status} with a JSON body that is not an object`);
  }
  const fields = body as Record<string, unknown>;

  if (status !== 200) {
    // RFC 6749 section 5.2: 400 (or 401 for invalid_client) with an `error` code.
    if (status >= 400 && status < 500 && typeof fields['error'] === 'string' && fields['error']) {
      const description = typeof fields['error_description'] === 'string' ? scrubText(fields['error_description'], 256) : undefined;
      throw new StsOAuthError(scrubText(fields['error'], 64), description, status);
    }
    throw notConformant(`HTTP ${status}`);
  }

  const accessToken = fields['access_token'];
  if (typeof accessToken !== 'string' || accessToken.length === 0) throw notConformant('missing access_token');
  if (!HEADER_SAFE_TOKEN.test(accessToken)) throw notConformant('access_token contains characters not allowed in a header');

  const issuedTokenType = fields['issued_token_type'];
  if (typeof issuedTokenType !== 'string' || !issuedTokenType) throw notConformant('missing issued_token_type');

  const tokenType = fields['token_type'];
  if (typeof tokenType !== 'string' || !tokenType) throw notConformant('missing token_type');
  // We inject as a bearer token; "N_A" (section 2.2.1) is used when the issued token is not an
  // access token but is still usable as one (e.g. a JWT). Anything else (DPoP, MAC) we cannot send.
  // RFC 9449 section 5: a DPoP-bound token is `DPoP` (compared case-insensitively), only ever
  // accepted in answer to a request that carried a proof, since only then do we hold its key.
  const sendable = /^(bearer|n_a)$/i.test(tokenType) || (expect.dpop === true && /^dpop$/i.test(tokenType));
  if (!sendable) throw notConformant(`token_type "${scrubText(tokenType, 32)}" cannot be sent as a bearer token`);

  const expiresAt = lifetimeEnd(fields['expires_in'], accessToken, requestedAt);

  const scope = typeof fields['scope'] === 'string' ? fields['scope'] : undefined;
  return { accessToken, issuedTokenType, tokenType, issuedAt: requestedAt, expiresAt, scope };
}

/**
 * When the token stops being usable: the earlier of `expires_in` and the JWT's own `exp`,
 * and never more than MAX_TOKEN_LIFETIME_MS after the request. RFC 6749 5.1: expires_in is
 * a lifetime in seconds; `null` is read as absent. A JSON number too large for a double
 * (`1e400` parses to Infinity) is still a lifetime, just a very long one: it is clamped
 * like `1e308`.
 */
function lifetimeEnd(expiresIn: unknown, accessToken: string, requestedAt: number): number {
  const jwtExp = jwtExpiry(accessToken);
  const seconds = expiresIn === undefined || expiresIn === null ? undefined : lifetimeSeconds(expiresIn);
  if (seconds === undefined && jwtExp === undefined) {
    throw notConformant('no expires_in, and the access_token is not a JWT with an exp claim');
  }
  const fromExpiresIn = seconds === undefined ? Infinity : requestedAt + Math.min(seconds * 1000, MAX_TOKEN_LIFETIME_MS);
  // Trust whichever ends first: a JWT never outlives its own exp.
  const end = Math.min(fromExpiresIn, jwtExp ?? Infinity, requestedAt + MAX_TOKEN_LIFETIME_MS);
  if (end <= Date.now()) throw notConformant('the issued token is already expired');
  return end;
}

function lifetimeSeconds(expiresIn: unknown): number {
  // Some servers send the number as a string; accept digits, reject anything else.
  const seconds = typeof expiresIn === 'string' && /^\d+(\.\d+)?$/.test(expiresIn) ? Number(expiresIn) : expiresIn;
  if (typeof seconds !== 'number' || Number.isNaN(seconds) || seconds < 0) {
    throw notConformant('expires_in is not a non-negative number');
  }
  return seconds;
}

function notConformant(what: string): StsError {
  return new StsError('ERR_STS_RESPONSE_INVALID', `STS reply rejected: ${what}`);
}

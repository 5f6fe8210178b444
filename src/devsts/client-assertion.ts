/**
 * private_key_jwt (RFC 7523 section 2.2, claims per section 3): the client proves
 * who it is with a JWT signed by a key registered for it. Checked here: signature
 * against the client's JWKS, iss = sub = client_id, aud naming this server, exp
 * present and not far off, and jti used once while the assertion is alive (RFC 7523
 * section 3 item 7 lets the server refuse replays; OpenID Connect Core section 9
 * makes jti mandatory for this method).
 */
import { createLocalJWKSet, decodeJwt, errors, jwtVerify, type JSONWebKeySet, type JWSAlgorithm, type JWTVerifyGetKey } from 'jose';
import { invalidClient, type OAuthError } from '../oauth/oauth-error.js';

export { CLIENT_ASSERTION_TYPE_JWT_BEARER } from '../oauth/urns.js';

/** Asymmetric only: an HMAC assertion would be client_secret_jwt, which is not offered. */
const ALGORITHMS: JWSAlgorithm[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

const CLOCK_TOLERANCE_SECONDS = 5;

export interface AssertionClient {
  readonly clientId: string;
  readonly jwks: JSONWebKeySet;
}

export interface ClientAssertionVerifierConfig {
  /** Accepted `aud` values: the issuer and the token endpoint URLs (RFC 7523 section 3 item 3). */
  readonly audiences: readonly string[];
  /** RFC 7523 section 3 item 4 lets the server refuse an exp "unreasonably far in the future". */
  readonly maxLifetimeSeconds: number;
  readonly now?: () => number;
}

export interface ClientAssertionVerifier {
  /** Resolves when the assertion authenticates `client`; throws OAuthError invalid_client otherwise. */
  verify(assertion: string, client: AssertionClient): Promise<void>;
}

/** The unverified `sub`, to find the registration when no client_id was sent (RFC 7521 section 4.2). */
export function unverifiedAssertionSubject(assertion: string): string | undefined {
  try {
    const sub = decodeJwt(assertion).sub;
    return typeof sub === 'string' && sub !== '' ? sub : undefined;
  } catch {
    throw invalidAssertion('client_assertion is not a well-formed JWT');
  }
}

export function createClientAssertionVerifier(config: ClientAssertionVerifierConfig): ClientAssertionVerifier {
  const now = config.now ?? Date.now;
  const keySets = new Map<string, JWTVerifyGetKey>();
  /** `client_id NUL jti` -> when the entry may be forgotten (epoch ms): after that, exp already refuses it. */
  const seenJti = new Map<string, number>();

  const forgetExpired = (at: number): void => {
    for (const [key, until] of seenJti) if (until <= at) seenJti.delete(key);
  };

  return {
    async verify(assertion, client) {
      let keys = keySets.get(client.clientId);
      if (keys === undefined) {
        keys = createLocalJWKSet(client.jwks);
        keySets.set(client.clientId, keys);
      }
      let payload;
      try {
        ({ payload } = await jwtVerify(assertion, keys, {
          issuer: client.clientId,
          subject: client.clientId,
          audience: [...config.audiences],
          requiredClaims: ['exp', 'jti'],
          algorithms: ALGORITHMS,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          currentDate: new Date(now()),
        }));
      } catch (err) {
        throw describeFailure(err);
      }
      const nowSeconds = now() / 1000;
      const exp = payload.exp as number;
      if (exp - nowSeconds > config.maxLifetimeSeconds + CLOCK_TOLERANCE_SECONDS) {
        throw invalidAssertion(`client_assertion expires more than ${config.maxLifetimeSeconds} s from now (RFC 7523 section 3)`);
      }
      const jti = payload.jti;
      if (typeof jti !== 'string' || jti === '') throw invalidAssertion("client_assertion has an empty 'jti' claim");
      forgetExpired(now());
      const key = `${client.clientId}\u0000${jti}`;
      if (seenJti.has(key)) throw invalidAssertion('client_assertion was already used (its jti was seen before)');
      seenJti.set(key, (exp + CLOCK_TOLERANCE_SECONDS) * 1000);
    },
  };
}

/** RFC 7523 section 3.1: a rejected assertion is invalid_client. Our words only, never the assertion. */
function describeFailure(err: unknown): OAuthError {
  if (err instanceof errors.JWTExpired) return invalidAssertion('client_assertion has expired', err);
  if (err instanceof errors.JWTClaimValidationFailed) {
    const what = err.reason === 'missing' ? `is missing the '${err.claim}' claim` : err.claim === 'nbf' ? 'is not yet valid' : `failed the '${err.claim}' claim check`;
    return invalidAssertion(`client_assertion ${what}`, err);
  }
  if (err instanceof errors.JOSEError) {
    switch (err.code) {
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        return invalidAssertion('client_assertion signature verification failed', err);
      case 'ERR_JWKS_NO_MATCHING_KEY':
      case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
        return invalidAssertion("no single key registered for the client matches the client_assertion's header", err);
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
      case 'ERR_JOSE_NOT_SUPPORTED':
        return invalidAssertion('client_assertion is signed with an algorithm that is not accepted', err);
      default:
        break;
    }
  }
  return invalidAssertion('client_assertion is not a valid JWT', err);
}

function invalidAssertion(description: string, cause?: unknown): OAuthError {
  return invalidClient(description, cause);
}

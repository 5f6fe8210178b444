/**
 * Protocol errors of the token endpoints we serve (the reference STS and the sidecar's
 * local RFC 8693 endpoint), answered as RFC 6749 section 5.2 JSON bodies. These are wire
 * errors told to a client, not sidecar failures, so they live apart from `src/errors.ts`
 * (whose codes describe what the sidecar hit).
 */

/** RFC 6749 section 5.2, RFC 8693 section 2.2.2 and RFC 6749 section 4.1.2.1 codes we answer with. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'server_error'
  | 'temporarily_unavailable'
  /** RFC 9449 section 5: the DPoP proof of a token request is invalid. */
  | 'invalid_dpop_proof'
  /** RFC 9449 section 8: send the request again with the nonce in the `DPoP-Nonce` header. */
  | 'use_dpop_nonce';

export interface OAuthErrorOptions {
  /** Defaults: 401 for invalid_client, 500 server_error, 503 temporarily_unavailable, else 400. */
  status?: number;
  headers?: Readonly<Record<string, string>>;
  cause?: unknown;
}

export class OAuthError extends Error {
  readonly error: OAuthErrorCode;
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;

  /** `description` must be our own words: it is sent to the client and may be logged. */
  constructor(error: OAuthErrorCode, description: string, options: OAuthErrorOptions = {}) {
    super(toErrorDescription(description), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OAuthError';
    this.error = error;
    this.status = options.status ?? defaultStatus(error);
    this.headers = options.headers ?? {};
  }

  /** The RFC 6749 section 5.2 response body. */
  toJSON(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.error, error_description: this.message };
  }
}

/**
 * RFC 7235 section 3.1 requires a challenge on every 401; RFC 6749 section 5.2
 * requires it in particular when the client tried the Authorization header.
 */
export const BASIC_CHALLENGE = 'Basic realm="dev-sts"';

/** RFC 6749 section 5.2 (and RFC 8705 section 2, RFC 7523 section 3.1): client authentication failed. */
export function invalidClient(description: string, cause?: unknown): OAuthError {
  return new OAuthError('invalid_client', description, {
    headers: { 'www-authenticate': BASIC_CHALLENGE },
    ...(cause === undefined ? {} : { cause }),
  });
}

function defaultStatus(error: OAuthErrorCode): number {
  switch (error) {
    case 'invalid_client':
      return 401;
    case 'server_error':
      return 500;
    case 'temporarily_unavailable':
      return 503;
    default:
      return 400;
  }
}

/**
 * RFC 6749 section 5.2: error_description MUST NOT include characters outside
 * %x20-21 / %x23-5B / %x5D-7E, i.e. printable ASCII without `"` and `\`.
 * Anything else becomes `?`, and the text is bounded so a hostile `iss` cannot bloat it.
 */
export function toErrorDescription(text: string, maxLength = 300): string {
  const safe = text.replace(/[^\x20-\x21\x23-\x5B\x5D-\x7E]/g, '?');
  return safe.length > maxLength ? `${safe.slice(0, maxLength - 3)}...` : safe;
}

/** Quote a value we choose to show (an issuer name), safe for error_description. */
export function quoteForDescription(value: string, maxLength = 120): string {
  const safe = toErrorDescription(value, maxLength);
  return `'${safe}'`;
}

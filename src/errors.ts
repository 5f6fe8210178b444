/**
 * One error hierarchy for the whole sidecar. Every error carries a stable `code`
 * (ERR_<AREA>_<WHAT>) from a closed union so callers can `switch (err.code)`,
 * and the HTTP status the proxy answers with when the error reaches an app.
 *
 * Messages never contain a token: they are built from our own words and from
 * values that are safe to show (key paths, URLs without credentials, OAuth
 * error codes). Upstream text that could echo a token goes through `scrub()`.
 */

/*
 * The codes, one union per area, each member with the one line docs/design.md shows for it
 * (the table there is generated from this file by test/helpers/error-table.ts, in the order
 * of `ErrorCode`; a code without its own line shows its class's). Each code is written once:
 * an error class takes its area's union, and `ErrorCode` is the union of the areas.
 */

export type ConfigErrorCode =
  /** The configuration breaks the schema or a cross-reference; the message names the key path (check-config exits 2). */
  | 'ERR_CONFIG_INVALID'
  /** The config file cannot be read. */
  | 'ERR_CONFIG_UNREADABLE';

export type SubjectTokenErrorCode =
  /** Declared for a subject token that cannot be read; no code raises it today. */
  | 'ERR_SUBJECT_TOKEN_UNAVAILABLE'
  /** The subject token is a JWT past its own `exp`: it is never sent to the STS. */
  | 'ERR_SUBJECT_TOKEN_EXPIRED';

export type StsErrorCode =
  /** The STS did not answer within `sts.timeoutSeconds`. */
  | 'ERR_STS_TIMEOUT'
  /** The connection to the STS failed. */
  | 'ERR_STS_UNREACHABLE'
  /** The STS answered with a 5xx status. */
  | 'ERR_STS_SERVER_ERROR'
  /** The STS refused the exchange with an RFC 6749 section 5.2 error (kept as `error`, scrubbed). */
  | 'ERR_STS_OAUTH_ERROR'
  /** The STS's reply is not a conformant RFC 8693 section 2.2.1 response. */
  | 'ERR_STS_RESPONSE_INVALID'
  /** The STS's reply is larger than `sts.maxResponseBytes`. */
  | 'ERR_STS_RESPONSE_TOO_LARGE'
  /** Twice in a row the STS bound the token to another certificate than the identity's (RFC 8705 section 3.1). */
  | 'ERR_STS_TOKEN_BINDING_MISMATCH'
  /** A `binding: dpop` route got a Bearer token back (RFC 9449 section 5) and does not set `dpop.allowBearer`. */
  | 'ERR_STS_DPOP_NOT_BOUND'
  /** Twice in a row the STS bound the token (`cnf.jkt`) to another key than the sidecar's DPoP key (RFC 9449 section 6.1). */
  | 'ERR_STS_DPOP_BINDING_MISMATCH';

export type DpopErrorCode =
  /** The DPoP key (file) is not an EC P-256, Ed25519 or RSA (2048+) private key in PEM or JWK form. */
  'ERR_DPOP_KEY_INVALID';

export type TokenErrorCode =
  /** No valid token for the route; the request is refused, never forwarded bare (`cause` names the root code). */
  | 'ERR_TOKEN_UNAVAILABLE'
  /** A local endpoint was asked for a DPoP-bound token: its key stays in the sidecar, so the token is never handed out (RFC 9449). */
  | 'ERR_TOKEN_DPOP_BOUND';

export type ProxyErrorCode =
  /** No route matches the request; nothing is forwarded. */
  | 'ERR_ROUTE_NOT_FOUND'
  /** Forward proxy with `forward.unmatched: deny`: no route matches the destination. */
  | 'ERR_FORWARD_DENIED'
  /** Forward proxy: a request target it cannot use (bad authority, scheme or port). */
  | 'ERR_FORWARD_BAD_TARGET'
  /** The request would come back to the sidecar itself (one of its own listeners, or its own Via). */
  | 'ERR_FORWARD_LOOP'
  /** A path whose meaning depends on who decodes it (encoded slash with dot-segments, backslash, NUL). */
  | 'ERR_PROXY_PATH_REJECTED'
  /** A method the sidecar will not forward with a token (TRACE, RFC 9110 section 9.3.8). */
  | 'ERR_PROXY_METHOD_NOT_ALLOWED'
  /** A request that is malformed for routing: more than one Host field line (RFC 9112 section 3.2). */
  | 'ERR_PROXY_BAD_REQUEST';

export type UpstreamErrorCode =
  /** The connection to the upstream failed. */
  | 'ERR_UPSTREAM_UNREACHABLE'
  /** The upstream timed out: connecting, or no headers or body chunk within `routes[].upstreamTimeoutSeconds`. */
  | 'ERR_UPSTREAM_TIMEOUT'
  /** TLS with the upstream failed (handshake or certificate). */
  | 'ERR_UPSTREAM_TLS'
  /** The upstream broke the exchange otherwise: an HTTP/2 stream reset or closed early, an upgrade switched without a 101. */
  | 'ERR_UPSTREAM_FAILED';

export type BoundTokenErrorCode =
  /** `verifyBoundToken`: signature, issuer, audience, expiry or a malformed `cnf`. */
  | 'ERR_BOUND_TOKEN_INVALID'
  /** `verifyBoundToken`: the token is bound but the connection carried no client certificate. */
  | 'ERR_BOUND_TOKEN_NO_CLIENT_CERT'
  /** `verifyBoundToken`: binding is required and the token has no `cnf.x5t#S256`. */
  | 'ERR_BOUND_TOKEN_NOT_BOUND'
  /** `verifyBoundToken`: the token is bound to another certificate than the connection's. */
  | 'ERR_BOUND_TOKEN_MISMATCH'
  /** `verifyDpopRequest`: no DPoP proof, or one that fails RFC 9449 section 4.3 (signature, typ, htm, htu, iat, ath). */
  | 'ERR_BOUND_TOKEN_DPOP_PROOF_INVALID'
  /** `verifyDpopRequest`: the proof's `jti` was seen before within its lifetime (a replayed proof). */
  | 'ERR_BOUND_TOKEN_DPOP_REPLAYED'
  /** `verifyDpopRequest`: the proof is signed by another key than the token's `cnf.jkt`, or the token is not DPoP-bound. */
  | 'ERR_BOUND_TOKEN_DPOP_MISMATCH'
  /** `verifyDpopRequest`: the server demands a nonce and the proof has none or an old one (answer `use_dpop_nonce`). */
  | 'ERR_BOUND_TOKEN_DPOP_NONCE';

/** Every code. */
export type ErrorCode =
  | ConfigErrorCode
  | SubjectTokenErrorCode
  | StsErrorCode
  | TokenErrorCode
  | ProxyErrorCode
  | UpstreamErrorCode
  | BoundTokenErrorCode
  | DpopErrorCode;

export class SidecarError extends Error {
  readonly code: ErrorCode;
  /** The HTTP status an app sees when this error ends its request. */
  readonly status: number;

  constructor(code: ErrorCode, message: string, status: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
  }
}

export class ConfigError extends SidecarError {
  /** Dotted key path of the offending setting, e.g. `routes[0].upstream`. */
  readonly path: string;
  constructor(path: string, problem: string, options?: { cause?: unknown; code?: ConfigErrorCode }) {
    super(options?.code ?? 'ERR_CONFIG_INVALID', path ? `${path}: ${problem}` : problem, 500, options);
    this.path = path;
  }
}

export class SubjectTokenError extends SidecarError {
  constructor(code: SubjectTokenErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, 503, options);
  }
}

export class StsError extends SidecarError {
  constructor(code: StsErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, 503, options);
  }
}

/** The DPoP key (RFC 9449) cannot be used; at start-up it becomes a ConfigError naming `dpop.key`. */
export class DpopError extends SidecarError {
  constructor(code: DpopErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, 503, options);
  }
}

/** RFC 6749 section 5.2 error response from the STS, kept as the STS sent it (scrubbed). */
export class StsOAuthError extends StsError {
  readonly error: string;
  readonly errorDescription: string | undefined;
  /** HTTP status the STS answered with. */
  readonly stsStatus: number;
  constructor(error: string, errorDescription: string | undefined, stsStatus: number) {
    super(
      'ERR_STS_OAUTH_ERROR',
      `STS rejected the exchange: ${error}${errorDescription ? ` (${errorDescription})` : ''}`,
    );
    this.error = error;
    this.errorDescription = errorDescription;
    this.stsStatus = stsStatus;
  }
}

/**
 * The sidecar could not produce a token for a route; the request is refused, never forwarded bare.
 * The one failure the token cache reports: what went wrong is read from its fields (the root
 * code, the STS's OAuth error), so the proxy and the endpoints never walk the cause chain.
 */
export class TokenUnavailableError extends SidecarError {
  readonly route: string;
  /** The code of the innermost SidecarError in the cause chain, else this error's own: what failed first. */
  readonly rootCode: ErrorCode;
  /** When the STS refused the exchange (RFC 6749 section 5.2): its `error`, scrubbed by the STS client. */
  readonly stsError: string | undefined;
  /** ...and its `error_description`, scrubbed likewise, when it sent one. */
  readonly stsErrorDescription: string | undefined;
  constructor(route: string, cause: unknown) {
    const detail = cause instanceof SidecarError ? `${cause.code}: ${cause.message}` : 'exchange failed';
    super('ERR_TOKEN_UNAVAILABLE', `no token available for route "${route}" (${detail})`, 503, { cause });
    this.route = route;
    this.rootCode = rootCode(cause) ?? this.code;
    const refusal = innermost(cause, StsOAuthError);
    this.stsError = refusal?.error;
    this.stsErrorDescription = refusal?.errorDescription;
  }
}

/**
 * A local endpoint (token endpoint, metadata emulation) refuses a DPoP-bound token: the SDK
 * asking could not prove the key, which never leaves the sidecar (issue 16). 400.
 */
export class DpopBoundTokenError extends SidecarError {
  constructor(route: string) {
    super('ERR_TOKEN_DPOP_BOUND', `route "${route}" issues DPoP-bound tokens (RFC 9449); the key stays in the sidecar, so send the requests through its proxy instead`, 400);
  }
}

export class RouteNotFoundError extends SidecarError {
  constructor(message: string) {
    super('ERR_ROUTE_NOT_FOUND', message, 404);
  }
}

/**
 * The forward proxy refused a destination (`forward.unmatched: deny` and no route matches).
 * 403 per RFC 9110 15.5.4: the proxy understood the request and will not fulfil it.
 */
export class ForwardDeniedError extends SidecarError {
  constructor(message: string) {
    super('ERR_FORWARD_DENIED', message, 403);
  }
}

/** A forward-proxy request target the sidecar cannot use (bad authority, scheme or port): 400. */
export class ForwardTargetError extends SidecarError {
  constructor(message: string) {
    super('ERR_FORWARD_BAD_TARGET', message, 400);
  }
}

/**
 * A request that would come back to the sidecar itself (a CONNECT or absolute-form target that
 * is one of its own listeners, or a request carrying its own Via): 508 (RFC 5842 7.2).
 */
export class ForwardLoopError extends SidecarError {
  constructor(message: string) {
    super('ERR_FORWARD_LOOP', message, 508);
  }
}

/**
 * A path whose meaning depends on who decodes it (dot-segments hidden behind an encoded
 * slash, a backslash or NUL): an upstream could read it as outside the route (issue 10). 400.
 */
export class PathRejectedError extends SidecarError {
  constructor(message: string) {
    super('ERR_PROXY_PATH_REJECTED', message, 400);
  }
}

/**
 * A request the sidecar cannot route as sent: two Host lines could name two routes, and the
 * app and an upstream could disagree on which one counts (RFC 9112 3.2 asks for 400). 400.
 */
export class BadRequestError extends SidecarError {
  constructor(message: string) {
    super('ERR_PROXY_BAD_REQUEST', message, 400);
  }
}

/** A method the sidecar will not forward with a token (TRACE, RFC 9110 9.3.8): 405. */
export class MethodNotAllowedError extends SidecarError {
  constructor(message: string) {
    super('ERR_PROXY_METHOD_NOT_ALLOWED', message, 405);
  }
}

export class UpstreamError extends SidecarError {
  constructor(
    code: UpstreamErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, code === 'ERR_UPSTREAM_TIMEOUT' ? 504 : 502, options);
  }
}


/**
 * A resource server refused a presented token (`verifyBoundToken`). Always 401: RFC 8705
 * section 3 and RFC 6750 section 3.1 answer every one of these with invalid_token.
 */
export class BoundTokenError extends SidecarError {
  declare readonly code: BoundTokenErrorCode;
  constructor(code: BoundTokenErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, 401, options);
  }
}

export function isSidecarError(err: unknown): err is SidecarError {
  return err instanceof SidecarError;
}

/** The code of the innermost SidecarError in a cause chain. */
export function rootCode(err: unknown): ErrorCode | undefined {
  return innermost(err, SidecarError)?.code;
}

/** The innermost error of a class in a cause chain (at most 8 deep: a cycle must not hang). */
function innermost<T extends Error>(err: unknown, kind: abstract new (...args: never[]) => T): T | undefined {
  let found: T | undefined;
  let current: unknown = err;
  for (let depth = 0; depth < 8 && current instanceof Error; depth++) {
    if (current instanceof kind) found = current;
    current = current.cause;
  }
  return found;
}

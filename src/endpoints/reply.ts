/**
 * Reply helpers shared by the local endpoints: JSON and text bodies, lifetimes, and the
 * mapping from a failed token lookup to what a client is told. Nothing here ever puts a
 * token into an error: messages are our own words, the STS's text is scrubbed upstream.
 */
import { DpopBoundTokenError, SidecarError, TokenUnavailableError } from '../errors.js';
import { scrub } from '../log/redact.js';
import type { OAuthErrorCode } from '../oauth/oauth-error.js';
import { toErrorDescription } from '../oauth/oauth-error.js';
import type { CachedToken } from '../cache/cached-token.js';

/** RFC 6749 section 5.1: token responses (and errors) must not be cached. */
export const NO_STORE: Readonly<Record<string, string>> = Object.freeze({ 'cache-control': 'no-store', pragma: 'no-cache' });

export { sendJson, sendText } from '../http/reply.js';

/**
 * Whole seconds the cached token has left, rounded down so a client never believes in a
 * second the token does not have. Integers only: grpc-go decodes expires_in into an int64.
 */
export function remainingSeconds(token: CachedToken, now: number): number {
  return Math.max(1, Math.floor((token.expiresAt - now) / 1000));
}

/** RFC 6749 section 7.1: the scheme is case-insensitive, but grpc-go copies it verbatim into `authorization`. */
export function tokenTypeForClient(token: CachedToken): string {
  return /^bearer$/i.test(token.tokenType) ? 'Bearer' : token.tokenType;
}

/** The path without query, and the query; parsed by hand so `//x` is never read as a host. */
export function splitUrl(rawUrl: string | undefined): { path: string; query: URLSearchParams } {
  const url = rawUrl ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  return { path, query: new URLSearchParams(q < 0 ? '' : url.slice(q + 1)) };
}

/** What a client is told when no token could be had for its route. */
export interface TokenFailure {
  readonly status: number;
  readonly error: OAuthErrorCode;
  /** RFC 6749 section 5.2 charset, our words plus the STS's scrubbed error code. */
  readonly description: string;
  /** Stable code for logs and metrics: the innermost SidecarError code. */
  readonly code: string;
}

/**
 * STS refusals that concern the grant or the target are passed through (RFC 6749 section
 * 5.2 codes the caller can understand); a refusal of the sidecar's own client credentials
 * or an STS that is down is the sidecar's problem: 503 temporarily_unavailable.
 */
const PASSED_THROUGH: ReadonlySet<string> = new Set(['invalid_grant', 'invalid_target', 'invalid_scope']);

/**
 * Issue 16: a DPoP-bound token is useless without its key, which never leaves the sidecar;
 * handing it out would only let it leak. Refused with ERR_TOKEN_DPOP_BOUND.
 */
export function dpopBoundRefusal(token: CachedToken, route: string): TokenFailure | undefined {
  if (!token.dpop) return undefined;
  const err = new DpopBoundTokenError(route);
  return { status: err.status, error: 'invalid_request', description: toErrorDescription(err.message), code: err.code };
}

export function describeTokenFailure(err: unknown, route: string): TokenFailure {
  if (!(err instanceof SidecarError)) {
    return { status: 500, error: 'server_error', description: `no token available for route ${route}`, code: 'ERR_UNKNOWN' };
  }
  // The cache's failure model: a provider that threw anything else is read the same way.
  const failure = err instanceof TokenUnavailableError ? err : new TokenUnavailableError(route, err);
  if (failure.stsError !== undefined) {
    const detail = failure.stsErrorDescription ? `: ${scrub(failure.stsErrorDescription, 160)}` : '';
    const description = toErrorDescription(`the STS refused the exchange for route ${route} (${scrub(failure.stsError, 64)}${detail})`);
    if (PASSED_THROUGH.has(failure.stsError)) return { status: 400, error: failure.stsError as OAuthErrorCode, description, code: 'ERR_STS_OAUTH_ERROR' };
    return { status: 503, error: 'temporarily_unavailable', description, code: 'ERR_STS_OAUTH_ERROR' };
  }
  const code = failure.rootCode;
  return { status: 503, error: 'temporarily_unavailable', description: `no token available for route ${route} (${code}); retry later`, code };
}

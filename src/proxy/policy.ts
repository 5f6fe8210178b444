/**
 * The request policy every entry shares (issue 11 item 3), decided once here: which methods
 * are never forwarded, whether the route's token is injected, and the header block sent
 * upstream (hop-by-hop fields removed before ours are added, Host from the route, the token).
 */
import type { CachedToken } from '../cache/token-provider.js';
import { MethodNotAllowedError } from '../errors.js';
import type { ProxyRoute } from './context.js';
import { forwardRequestHeaders } from './headers.js';
import type { InboundRequest } from './inbound.js';

/**
 * RFC 9110 9.3.8: TRACE echoes the request it received, injected token included, back to
 * whoever sent it, and through any intermediary that logs it (issue 10 item 14).
 */
export function refusedMethod(method: string | undefined): MethodNotAllowedError | undefined {
  return method === 'TRACE' ? new MethodNotAllowedError('TRACE is not forwarded on a route: it would echo the injected token (RFC 9110 9.3.8)') : undefined;
}

/** The app keeps its own credential when the route says so (authorization.replaceExisting: false). */
export function keepsOwnCredential(route: ProxyRoute, req: InboundRequest): boolean {
  return !route.replaceExisting && req.headers[route.tokenHeader] !== undefined;
}

/** The Host sent upstream: the route's configured host under preserveHost, never the app's (issue 10 item 8). */
export function upstreamHostHeader(route: ProxyRoute): string {
  return route.preserveHost && route.host ? route.host : route.upstream.host;
}

/**
 * `Bearer <token>`, built once per issued token rather than once per request. Keyed by the
 * token object alone: each cache entry (and so each token object) belongs to one route.
 */
const credentials = new WeakMap<CachedToken, string>();
export function credentialFor(route: ProxyRoute, token: CachedToken): string {
  let value = credentials.get(token);
  if (value === undefined) {
    value = route.tokenScheme ? `${route.tokenScheme} ${token.accessToken}` : token.accessToken;
    credentials.set(token, value);
  }
  return value;
}

/**
 * The header block for the upstream: the app's fields minus hop-by-hop, Proxy-* and (when a
 * token is injected) its own token header; then Host, the upgrade's Connection and Upgrade,
 * and the token. Added after the filtering, so `Connection: authorization` cannot remove them.
 */
export function upstreamRequestHeaders(route: ProxyRoute, req: InboundRequest, token: CachedToken | undefined, upgrade: boolean): string[] {
  const headers = forwardRequestHeaders(req.rawHeaders, req.headers.connection, {
    tokenHeader: route.tokenHeader,
    dropTokenHeader: token !== undefined,
    dropBodyFraming: upgrade,
  });
  headers.push('host', upstreamHostHeader(route));
  if (upgrade) headers.push('connection', 'Upgrade', 'upgrade', req.headers.upgrade ?? 'websocket');
  if (token) headers.push(route.tokenHeader, credentialFor(route, token));
  return headers;
}

/**
 * Whether an HTTP/1.x request has a body to stream (RFC 9112 6.3). An HTTP/2 entry (issue 12)
 * needs its own answer: there a body is framed by DATA frames, without either field.
 */
export function hasBody(req: InboundRequest): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The request policy every entry shares (issue 11 item 3), decided once here: which methods
 * are never forwarded, whether the route's token is injected, and the header block sent
 * upstream (hop-by-hop fields removed before ours are added, Host from the route, the token).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { CachedToken } from '../cache/token-provider.js';
import { MethodNotAllowedError } from '../errors.js';
import type { ProxyRoute } from './context.js';
import { forwardRequestHeaders, forwardTrailers } from './headers.js';
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
 * token object alone: each cache entry (and so each token object) belongs to one route. A
 * DPoP-bound token is always `DPoP <token>` (RFC 9449 section 7.1).
 */
const credentials = new WeakMap<CachedToken, string>();
export function credentialFor(route: ProxyRoute, token: CachedToken): string {
  let value = credentials.get(token);
  if (value === undefined) {
    const scheme = token.dpop ? 'DPoP' : route.tokenScheme;
    value = scheme ? `${scheme} ${token.accessToken}` : token.accessToken;
    credentials.set(token, value);
  }
  return value;
}

/**
 * The header block for the upstream: the app's fields minus hop-by-hop, Proxy-* and (when a
 * token is injected) its own token header; then Host, the upgrade's Connection and Upgrade,
 * and the token. Added after the filtering, so `Connection: authorization` cannot remove them.
 */
export function upstreamRequestHeaders(
  route: ProxyRoute,
  req: InboundRequest,
  token: CachedToken | undefined,
  upgrade: boolean,
  dpopProof?: string,
): string[] {
  const headers = forwardRequestHeaders(req.rawHeaders, req.headers.connection, {
    tokenHeader: route.tokenHeader,
    dropTokenHeader: token !== undefined,
    dropBodyFraming: upgrade,
    dropDpopHeader: dpopProof !== undefined,
  });
  headers.push('host', upstreamHostHeader(route));
  if (upgrade) headers.push('connection', 'Upgrade', 'upgrade', req.headers.upgrade ?? 'websocket');
  if (token) headers.push(route.tokenHeader, credentialFor(route, token));
  if (dpopProof !== undefined) headers.push('dpop', dpopProof);
  return headers;
}

/**
 * Whether a request has a body to stream. HTTP/1.x frames it with Content-Length or
 * Transfer-Encoding (RFC 9112 6.3). HTTP/2 frames it with DATA frames, usually without
 * Content-Length (gRPC never sends one): there a request has none only when its HEADERS
 * frame ended the stream (RFC 9113 8.1), which node:http2 reports as `endAfterHeaders`.
 */
export function hasBody(req: InboundRequest): boolean {
  const length = req.headers['content-length'];
  if (req.httpVersion === '2.0') {
    const stream = (req as InboundRequest & { stream?: { endAfterHeaders?: boolean } }).stream;
    return !stream?.endAfterHeaders && length !== '0';
  }
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** The app accepts trailers (`TE: trailers`, RFC 9110 10.1.4): gRPC requires it on HTTP/2 (RFC 9113 8.2.2). */
export function acceptsTrailers(req: InboundRequest): boolean {
  const te = req.headers.te;
  return te !== undefined && String(te).split(',').some((t) => t.split(';', 1)[0]!.trim().toLowerCase() === 'trailers');
}

/**
 * The app's request trailers, filtered as the header block is (no framing, routing or
 * credential fields, RFC 9110 6.5.1), read once its body has ended: node:http fills
 * IncomingMessage.trailers at the end, node:http2 its request's on the trailing HEADERS frame.
 */
export function requestTrailers(route: ProxyRoute, req: InboundRequest): () => Record<string, string | string[]> {
  return () => forwardTrailers((req as InboundRequest & { trailers?: IncomingHttpHeaders }).trailers ?? {}, route.tokenHeader);
}

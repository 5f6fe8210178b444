/**
 * The reverse proxy's entries: origin-form requests on the shared listener (Host and path
 * select the route) and on a route's dedicated listener (every request belongs to that route,
 * under its pathPrefix). Each is a resolver feeding the one pipeline (pipeline.ts).
 *
 * Fail closed: a request that matches no route gets a 404 and nothing is forwarded; when no
 * token can be had the pipeline answers 503. Every entry matches and forwards the same
 * normalised target (request-path.ts), so a route's token stays on its paths.
 */
import type { ProxyRoute } from './context.js';
import type { Entry, InboundRequest } from './inbound.js';
import { requestEntry, upgradeEntry, type Pipeline, type RouteResolver } from './pipeline.js';
import { normalizeRequestTarget } from './request-path.js';
import { pathMatches, RouteTable } from './routing.js';

/** Normalises `req.url` in place (see request-path.ts) and returns it. */
export function normalizeRequestUrl(req: InboundRequest): string {
  const url = normalizeRequestTarget(req.url ?? '/');
  req.url = url;
  return url;
}

/**
 * The authority a request names: HTTP/2's `:authority` (RFC 9113 8.3.1; clients generating
 * HTTP/2 send it instead of Host, and node:http2 keeps it as a header), else Host. A request
 * carrying both, naming different hosts, is malformed there (a server SHOULD treat it so):
 * it names no authority, so no route takes it.
 */
export function requestAuthority(req: InboundRequest): string | undefined {
  const host = req.headers.host;
  const pseudo = req.headers[':authority'];
  const authority = typeof pseudo === 'string' && pseudo !== '' ? pseudo : undefined;
  if (authority === undefined) return host;
  if (host !== undefined && host.toLowerCase() !== authority.toLowerCase()) return undefined;
  return authority;
}

/** The shared proxy listener: the authority (Host, or HTTP/2's :authority) and path select the route. */
export function sharedRouteResolver(routes: readonly ProxyRoute[]): RouteResolver {
  const table = new RouteTable(routes);
  return (req) => (req.url?.startsWith('/') ? table.match(requestAuthority(req), normalizeRequestUrl(req)) : undefined);
}

/** A route's dedicated listener: every request belongs to that route, if under its pathPrefix. */
export function dedicatedRouteResolver(route: ProxyRoute): RouteResolver {
  return (req) => (req.url?.startsWith('/') && pathMatches(route.pathPrefix, normalizeRequestUrl(req)) ? route : undefined);
}

/** Origin-form requests and upgrades on the shared listener. */
export function reverseEntry(pipeline: Pipeline, routes: readonly ProxyRoute[]): Entry {
  const resolve = sharedRouteResolver(routes);
  return {
    request: requestEntry(pipeline, resolve, (req) => `no route for host "${requestAuthority(req) ?? ''}" and this path`),
    upgrade: upgradeEntry(pipeline, resolve),
  };
}

/** Everything on a route's dedicated listener. */
export function dedicatedEntry(pipeline: Pipeline, route: ProxyRoute): Entry {
  const resolve = dedicatedRouteResolver(route);
  return {
    request: requestEntry(pipeline, resolve, () => `route "${route.name}" serves only paths under "${route.pathPrefix}"`),
    upgrade: upgradeEntry(pipeline, resolve),
  };
}

/**
 * Choosing a route for an inbound request. Precedence (documented in the README):
 *   1. a request on a route's dedicated `listen` port belongs to that route only;
 *   2. on the shared proxy listener, the Host header selects the routes for that host
 *      (a route host with a port matches host:port exactly, one without matches any port);
 *   3. among those, the longest matching `pathPrefix` wins, on path-segment boundaries.
 * No match means no forwarding at all: the caller answers 404.
 *
 * The forward proxy (issue 4) matches a destination instead of a Host header: there the
 * port is known, so a route host without a port matches only the scheme's default port
 * (80 for http, 443 for https), and one with a port matches that port only.
 */

export interface RoutableRoute {
  readonly name: string;
  readonly host: string | undefined;
  readonly pathPrefix: string;
}

/** True when `path` is under `prefix` on a segment boundary ("/api" matches "/api/x", not "/apix"). */
export function pathMatches(prefix: string, path: string): boolean {
  if (prefix === '/' || path === prefix) return true;
  if (!path.startsWith(prefix)) return false;
  if (prefix.endsWith('/')) return true;
  const next = path.charCodeAt(prefix.length);
  return next === 47 /* / */ || next === 63 /* ? */;
}

/** Splits a Host header value into a lower-case name and an optional port ("[::1]:80" too). */
export function splitHost(value: string): { name: string; port: string | undefined } {
  const v = value.trim().toLowerCase();
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    const port = v.slice(end + 1).startsWith(':') ? v.slice(end + 2) : undefined;
    return { name: v.slice(0, end + 1), port };
  }
  const colon = v.lastIndexOf(':');
  return colon === -1 ? { name: v, port: undefined } : { name: v.slice(0, colon), port: v.slice(colon + 1) };
}

export class RouteTable<R extends RoutableRoute> {
  readonly #byHost = new Map<string, R[]>();

  constructor(routes: readonly R[]) {
    for (const route of routes) {
      if (!route.host) continue;
      const list = this.#byHost.get(route.host) ?? [];
      list.push(route);
      // Longest prefix first, so the first match is the most specific.
      list.sort((a, b) => b.pathPrefix.length - a.pathPrefix.length);
      this.#byHost.set(route.host, list);
    }
  }

  /** Route for a Host header value and a request-target path, on the shared listener. */
  match(hostHeader: string | undefined, path: string): R | undefined {
    if (!hostHeader) return undefined;
    const { name, port } = splitHost(hostHeader);
    const candidates = (port !== undefined ? this.#byHost.get(`${name}:${port}`) : undefined) ?? this.#byHost.get(name);
    return candidates?.find((r) => pathMatches(r.pathPrefix, path));
  }

  /**
   * Routes serving a forward-proxy destination, longest prefix first: those whose host is
   * `name:port`, and those whose host is `name` alone when `port` is the scheme's `defaultPort`
   * (both name the same destination then). `name` is lower-case, an IPv6 literal in brackets.
   */
  forDestination(name: string, port: number, defaultPort: number): readonly R[] | undefined {
    const exact = this.#byHost.get(`${name}:${port}`);
    const portless = port === defaultPort ? this.#byHost.get(name) : undefined;
    if (!exact || !portless) return exact ?? portless;
    // Stable sort: on equal prefixes the route naming the port explicitly comes first.
    return [...exact, ...portless].sort((a, b) => b.pathPrefix.length - a.pathPrefix.length);
  }

  /** Route for a forward-proxy destination and an origin-form path. */
  matchDestination(name: string, port: number, defaultPort: number, path: string): R | undefined {
    return this.forDestination(name, port, defaultPort)?.find((r) => pathMatches(r.pathPrefix, path));
  }
}

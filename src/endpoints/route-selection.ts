/**
 * Choosing the route whose token answers a token-exchange request (RFC 8693 section
 * 2.1): by the targets the client names (audience and resource, both "where the token
 * will be used") and its scope, matched against each route's configured values.
 */

export interface ServableRoute {
  readonly name: string;
  /** The route's audience and resource values. */
  readonly targets: readonly string[];
  /** The route's scope tokens (RFC 6749 section 3.3). */
  readonly scope: readonly string[];
  readonly requestedTokenType: string;
}

export interface RequestedTarget {
  readonly audience: readonly string[];
  readonly resource: readonly string[];
  readonly scope: readonly string[];
}

/**
 * 1. Targets named: the routes whose targets include every one named. grpc-go sends the
 *    same value as audience and resource, so the two are one set on both sides.
 * 2. Among those (or among all routes when no target is named), a route whose scope
 *    covers the requested scope is preferred; clients add scopes by default (grpc-go
 *    always sends cloud-platform), so scope never rules out a route matched by target.
 * 3. Ties go to configuration order; no match falls back to `defaultRoute`.
 */
export function selectRoute(
  routes: readonly ServableRoute[],
  request: RequestedTarget,
  defaultRoute: ServableRoute | undefined,
): ServableRoute | undefined {
  const targets = [...request.audience, ...request.resource];
  const byTarget = targets.length === 0 ? [] : routes.filter((r) => targets.every((t) => r.targets.includes(t)));
  const covers = (r: ServableRoute) => request.scope.every((s) => r.scope.includes(s));
  if (byTarget.length > 0) return byTarget.find(covers) ?? byTarget[0];
  if (targets.length === 0 && request.scope.length > 0) {
    const byScope = routes.find(covers);
    if (byScope) return byScope;
  }
  return defaultRoute;
}

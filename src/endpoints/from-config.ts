/**
 * From the validated config to the endpoint listeners main.ts opens: one entry per
 * configured endpoint, with its handler built. Kept here so main.ts stays wiring only.
 */
import type { RequestListener } from 'node:http';
import type { Config, ListenAddress, RouteConfig } from '../config/schema.js';
import { createAzureImdsHandler } from './azure-imds.js';
import { createPodTokenCheck, createRoutePodTokenCheck, type PodTokenSource } from './caller-check.js';
import type { EndpointContext, EndpointName } from './context.js';
import { createGceMetadataHandler } from './gce-metadata.js';
import type { ServableRoute } from './route-selection.js';
import { createTokenEndpointHandler } from './token-endpoint.js';

export interface EndpointListener {
  readonly name: EndpointName;
  /** Config key path of the listen address, for start-up errors. */
  readonly key: string;
  readonly listen: ListenAddress;
  readonly handler: RequestListener;
}

/**
 * `podToken`: the subject token `callers: pod-token` compares against; with several subject
 * tokens (issue 13), the function giving each route's, so a caller is served a route's token
 * only when it presents that route's subject token.
 */
export function endpointListeners(config: Config, ctx: EndpointContext, podToken: PodTokenSource | ((route: string) => PodTokenSource)): EndpointListener[] {
  const out: EndpointListener[] = [];
  const token = config.tokenEndpoint;
  if (token) {
    const served = tokenEndpointRoutes(config.routes, token.routes);
    const podTokenCheck = typeof podToken === 'function' ? () => createRoutePodTokenCheck(podToken, served.map((r) => r.name)) : () => createPodTokenCheck(podToken);
    const handler = createTokenEndpointHandler(
      {
        routes: served.map(servableRoute),
        defaultRoute: token.defaultRoute,
        isPodToken: token.callers === 'pod-token' ? podTokenCheck() : undefined,
      },
      ctx,
    );
    out.push({ name: 'token', key: 'tokenEndpoint.listen', listen: token.listen, handler });
  }
  const gce = config.metadata?.gce;
  if (gce) {
    const route = config.routes.find((r) => r.name === gce.route);
    const handler = createGceMetadataHandler(
      {
        route: gce.route,
        scopes: route?.scope ? route.scope.split(' ') : [],
        projectId: gce.projectId,
        numericProjectId: gce.numericProjectId,
        serviceAccountEmail: gce.serviceAccountEmail,
        universeDomain: gce.universeDomain,
      },
      ctx,
    );
    out.push({ name: 'gce', key: 'metadata.gce.listen', listen: gce.listen, handler });
  }
  const azure = config.metadata?.azure;
  if (azure) {
    const handler = createAzureImdsHandler({ resources: azure.resources, defaultRoute: azure.defaultRoute, clientId: azure.clientId }, ctx);
    out.push({ name: 'azure', key: 'metadata.azure.listen', listen: azure.listen, handler });
  }
  return out;
}

/**
 * The routes whose tokens the token endpoint hands out (issue 10 item 12): those listed in
 * tokenEndpoint.routes, else only the token-only routes (no upstream). A proxied route's
 * token is meant for its upstream through the proxy; handing it to any local caller that
 * asks is opt-in. Unserved routes are invisible: asking for one is asking for an unknown target.
 */
function tokenEndpointRoutes(routes: readonly RouteConfig[], listed: readonly string[] | undefined): RouteConfig[] {
  return routes.filter((r) => (listed ? listed.includes(r.name) : r.upstream === undefined));
}

function servableRoute(route: RouteConfig): ServableRoute {
  return {
    name: route.name,
    targets: [...(route.audience ?? []), ...(route.resource ?? [])],
    scope: route.scope ? route.scope.split(' ') : [],
    requestedTokenType: route.requestedTokenType,
  };
}

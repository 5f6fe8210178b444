/**
 * The proxy, built from the config: each route's upstream, the one pipeline, the forward
 * proxy (interception CA when a route intercepts), and the listeners: the shared one
 * (shared-listener.ts dispatches origin-form to the reverse proxy and absolute-form to the
 * forward proxy, CONNECT to the forward proxy) and each route's dedicated one.
 *
 * main.ts owns listening (the dial policy learns every listener's address, whatever its kind)
 * and the order of shutdown; what this builds is handed back to it through `defer`.
 */
import type { TokenProvider } from '../cache/token-provider.js';
import type { Config, ListenAddress } from '../config/schema.js';
import { readConfigFile } from '../config/files.js';
import type { CarryOver } from '../lifecycle/carry-over.js';
import type { Logger } from '../log/logger.js';
import type { LogThrottle } from '../log/throttle.js';
import type { ProxyObserver } from './context.js';
import { openInterceptionCa } from './forward/ca.js';
import type { DialPolicy } from './forward/dial-policy.js';
import { createForwardProxy } from './forward/forward-proxy.js';
import { LeafCertificateCache } from './forward/leaf-cache.js';
import type { ForwardObserver, ForwardRoute } from './forward/types.js';
import type { InboundListener, UpgradeListener } from './inbound.js';
import { listenerLimits, type ConnectionObserver, type ListenerKind } from './limits.js';
import type { ConnectListener, ListeningServer } from './listen.js';
import { createPipeline } from './pipeline.js';
import { dedicatedEntry, reverseEntry } from './reverse-proxy.js';
import { sharedListenerEntry } from './shared-listener.js';
import { createUpstream } from './upstream.js';

/** Starts one listener; main's, so every listener is known to the dial policy and closed in order. */
export type Listen = (
  kind: ListenerKind,
  address: ListenAddress,
  keyPath: string,
  onRequest: InboundListener,
  onUpgrade?: UpgradeListener,
  onConnect?: ConnectListener,
) => Promise<ListeningServer>;

export interface ProxyWiring {
  readonly tokens: TokenProvider;
  readonly logger: Logger;
  readonly failureLogs: LogThrottle;
  readonly observers: {
    readonly proxyObserver: ProxyObserver;
    readonly forwardObserver: ForwardObserver;
    readonly connectionObserver: ConnectionObserver;
  };
  readonly dialPolicy: DialPolicy;
  readonly listen: Listen;
  /** Closes `resource` at shutdown, after the listeners (last registered, first closed). */
  defer(close: () => void | Promise<void>): void;
  /** What a configuration reload keeps when its settings did not change (the interception CA). */
  readonly carryOver?: CarryOver;
}

export interface RunningProxy {
  readonly proxyUrl: string;
  /** URL of each route's dedicated listener, by route name. */
  readonly routeUrls: Readonly<Record<string, string>>;
  /** The interception CA's certificate file, when there is one. */
  readonly interceptionCaCert: string | undefined;
}

type ListenedRoute = ForwardRoute & { readonly listen: ListenAddress | undefined; readonly keyPath: string };

export async function startProxyFromConfig(config: Config, wiring: ProxyWiring): Promise<RunningProxy> {
  const routes = await routesFromConfig(config, wiring);
  const pipeline = createPipeline({ tokens: wiring.tokens, logger: wiring.logger, observer: wiring.observers.proxyObserver, failureLogs: wiring.failureLogs });

  // The interception CA exists only when a route intercepts (or one was configured).
  // A reload keeps the CA while forward.ca and forward.caCertOut stay (issue 13): apps trust a
  // generated CA's file, and a new CA would break every intercepted call.
  const openCa = async () => {
    const ca = await openInterceptionCa(config.forward);
    if (ca.generated) wiring.logger.info({ caCert: ca.certPath }, 'generated the forward-proxy interception CA; apps trust it via this file');
    return ca;
  };
  const caSettings = { ca: config.forward.ca, caCertOut: config.forward.caCertOut };
  const interceptionCa =
    config.forward.ca || routes.some((r) => r.intercept) ? await (wiring.carryOver ? wiring.carryOver.keep('interception-ca', caSettings, openCa) : openCa()) : undefined;
  const forward = createForwardProxy({
    routes,
    pipeline,
    unmatched: config.forward.unmatched,
    leaves: interceptionCa ? new LeafCertificateCache(interceptionCa.authority, { validitySeconds: config.forward.leafValiditySeconds }) : undefined,
    observer: wiring.observers.forwardObserver,
    policy: wiring.dialPolicy,
    limits: listenerLimits(config.limits, 'proxy'),
    connections: wiring.observers.connectionObserver,
  });
  wiring.defer(() => forward.close());

  const shared = sharedListenerEntry(reverseEntry(pipeline, routes), forward.absolute);
  const proxy = await wiring.listen('proxy', config.proxy.listen, 'proxy.listen', shared.request, shared.upgrade, forward.connectListener);
  const routeUrls: Record<string, string> = {};
  for (const route of routes) {
    if (!route.listen) continue;
    const own = dedicatedEntry(pipeline, route);
    routeUrls[route.name] = (await wiring.listen('proxy', route.listen, `${route.keyPath}.listen`, own.request, own.upgrade)).url;
  }
  return { proxyUrl: proxy.url, routeUrls, interceptionCaCert: interceptionCa?.certPath };
}

/** Routes with an upstream, each with its transport; token-only routes are served by the endpoints, never proxied. */
async function routesFromConfig(config: Config, wiring: ProxyWiring): Promise<ListenedRoute[]> {
  const routes: ListenedRoute[] = [];
  for (const [i, route] of config.routes.entries()) {
    if (!route.upstream) continue;
    // `keyPath`: token-only routes are skipped, so an index into `routes` is not one into config.routes.
    const keyPath = `routes[${i}]`;
    const upstream = createUpstream({
      url: route.upstream,
      timeoutMs: route.upstreamTimeoutSeconds * 1000,
      protocol: route.upstreamProtocol,
      idleTimeoutMs: config.limits.idleTimeoutSeconds * 1000,
      tls: {
        ca: route.ca ? await readConfigFile(route.ca, `${keyPath}.ca`) : undefined,
        servername: route.servername,
        clientCertificate: route.clientCertificate,
      },
    });
    wiring.defer(() => upstream.close());
    routes.push({
      name: route.name,
      host: route.host,
      pathPrefix: route.pathPrefix,
      listen: route.listen,
      upstream,
      tokenHeader: route.authorization.header,
      tokenScheme: route.authorization.scheme,
      replaceExisting: route.authorization.replaceExisting,
      preserveHost: route.preserveHost,
      intercept: route.intercept,
      keyPath,
    });
  }
  return routes;
}

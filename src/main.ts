/**
 * The composition root: config in, running sidecar out. Each area is built from its own
 * `*-from-config`, in dependency order so nothing is bound late; whatever is opened leaves
 * its close on one stack of resources, closed in reverse on shutdown or a failed start.
 */
import type { DestinationStream } from 'pino';
import { createAdmin, metricsFromConfig } from './admin/from-config.js';
import { withExchangeLogs } from './admin/exchange-log.js';
import { tokenProviderFromConfig } from './cache/from-config.js';
import type { TokenProvider } from './cache/token-provider.js';
import { readConfigFile } from './config/files.js';
import type { Config, ListenAddress, RouteConfig } from './config/schema.js';
import { credentialsFromConfig, logSourceError } from './credentials/from-config.js';
import { endpointListeners, type EndpointName } from './endpoints/index.js';
import { ConfigError } from './errors.js';
import { Resources, type Close } from './lifecycle/resources.js';
import { createLogger, type Logger } from './log/logger.js';
import { createRedactor, type Redactor } from './log/redact.js';
import { LogThrottle } from './log/throttle.js';
import { openInterceptionCa } from './proxy/forward/ca.js';
import { createDialPolicy } from './proxy/forward/dial-policy.js';
import { createForwardProxy } from './proxy/forward/forward-proxy.js';
import { LeafCertificateCache } from './proxy/forward/leaf-cache.js';
import type { ForwardRoute } from './proxy/forward/types.js';
import { listenerLimits, type ListenerKind } from './proxy/limits.js';
import { listenHttp, type ConnectListener, type ListeningServer } from './proxy/listen.js';
import {
  createDedicatedListenerHandler,
  createSharedListenerHandler,
  dedicatedRouteResolver,
  sharedRouteResolver,
  type ProxyContext,
  type RequestListener,
} from './proxy/reverse-proxy.js';
import { createUpgradeHandler, type UpgradeListener } from './proxy/upgrade.js';
import { createUpstream } from './proxy/upstream.js';
import { stsClientFromConfig } from './sts/client-from-config.js';
import { describeIdentity, identityFromConfig } from './tls/identity-from-config.js';

export interface StartOptions {
  /** Where logs go (default stdout). Tests pass a stream to inspect them. */
  readonly logDestination?: DestinationStream;
  /** A logger of your own scrubs only what its own redactor knows, not this sidecar's secrets. */
  readonly logger?: Logger;
  /** Wait for the first exchange of every eager route before resolving (default false). */
  readonly waitForTokens?: boolean;
}

export interface Sidecar {
  readonly proxyUrl: string;
  readonly adminUrl: string;
  /** URL of each route's dedicated listener, by route name. */
  readonly routeUrls: Readonly<Record<string, string>>;
  /** URL of each configured local endpoint (token, gce, azure). */
  readonly endpointUrls: Readonly<Partial<Record<EndpointName, string>>>;
  readonly tokens: TokenProvider;
  readonly logger: Logger;
  /** Resolves once every eager route has had its first exchange (successful or not). */
  readonly warmedUp: Promise<void>;
  close(drainMs?: number): Promise<void>;
}

export async function startSidecar(config: Config, options: StartOptions = {}): Promise<Sidecar> {
  // One redactor per sidecar (issue 10 item 23): its secrets live and die with it.
  const redactor = createRedactor();
  const logger = options.logger ?? createLogger(config.log.level, options.logDestination, redactor);
  const resources = new Resources();
  try {
    return await build(config, options, logger, redactor, resources);
  } catch (err) {
    await resources.close();
    throw err;
  }
}

async function build(config: Config, options: StartOptions, logger: Logger, redactor: Redactor, resources: Resources): Promise<Sidecar> {
  const metrics = metricsFromConfig(config);
  const { subjectSource, subjectTokens, actorToken } = await credentialsFromConfig(config, { logger, redactor, resources });
  const identity = await identityFromConfig(config, { logger, observer: metrics.identityObserver, resources });
  const stsClient = await stsClientFromConfig(config, { identity, redactor, resources, onSourceError: logSourceError(logger, 'sts.clientAuth') });
  const observer = withExchangeLogs(metrics.tokenObserver, logger);
  const tokens = tokenProviderFromConfig(config, { subjectTokens, actorToken, identity, stsClient, observer, redactor, resources });

  // Bridge for the proxy block below until it moves to proxy/from-config.ts (issue 11 item 4).
  const cleanups = { push: (close: Close) => resources.defer(close) };
  const tokenProvider = tokens;
  // `keyPath`: token-only routes are skipped here, so an index into proxyRoutes is not one into config.routes.
  const proxyRoutes: Array<ForwardRoute & { listen: RouteConfig['listen']; keyPath: string }> = [];
  for (const [i, route] of config.routes.entries()) {
    if (!route.upstream) continue; // token-only: served by the endpoints below, never proxied
    const upstream = createUpstream({
      url: route.upstream,
      timeoutMs: route.upstreamTimeoutSeconds * 1000,
      tls: {
        ca: route.ca ? await readConfigFile(route.ca, `routes[${i}].ca`) : undefined,
        servername: route.servername,
        clientCertificate: route.clientCertificate,
      },
    });
    cleanups.push(() => upstream.close());
    proxyRoutes.push({
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
      keyPath: `routes[${i}]`,
    });
  }

  const ctx: ProxyContext = { tokens: tokenProvider, logger, observer: metrics.proxyObserver, failureLogs: new LogThrottle() };
  // Issue 10 item 10: no relay back into any of the listeners below; item 11: with
  // allowNonLoopback, other hosts' requests are not relayed to local-only services.
  const dialPolicy = createDialPolicy({ refuseLocalDestinations: config.proxy.allowNonLoopback });
  const servers: ListeningServer[] = [];
  const listen = async (kind: ListenerKind, address: ListenAddress, key: string, onRequest: RequestListener, onUpgrade?: UpgradeListener, onConnect?: ConnectListener) => {
    try {
      const s = await listenHttp(address, onRequest, onUpgrade, {
        kind,
        limits: listenerLimits(config.limits, kind),
        observer: metrics.connectionObserver,
        admit: (req) => dialPolicy.admit(req),
        onConnect,
      });
      dialPolicy.addListener(s.address);
      servers.push(s);
      cleanups.push(() => s.close(0));
      return s;
    } catch (err) {
      throw new ConfigError(key, `cannot listen on ${address.host}:${address.port}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
    }
  };

  // The interception CA exists only when a route intercepts (or one was configured).
  const interceptionCa = config.forward.ca || proxyRoutes.some((r) => r.intercept) ? await openInterceptionCa(config.forward) : undefined;
  if (interceptionCa?.generated) logger.info({ caCert: interceptionCa.certPath }, 'generated the forward-proxy interception CA; apps trust it via this file');
  const forward = createForwardProxy({
    routes: proxyRoutes,
    ctx,
    unmatched: config.forward.unmatched,
    leaves: interceptionCa ? new LeafCertificateCache(interceptionCa.authority, { validitySeconds: config.forward.leafValiditySeconds }) : undefined,
    observer: metrics.forwardObserver,
    policy: dialPolicy,
    limits: listenerLimits(config.limits, 'proxy'),
    connections: metrics.connectionObserver,
  });
  cleanups.push(() => forward.close());

  const shared = await listen(
    'proxy',
    config.proxy.listen,
    'proxy.listen',
    forward.requestListener(createSharedListenerHandler(proxyRoutes, ctx)),
    createUpgradeHandler(forward.upgradeResolver(sharedRouteResolver(proxyRoutes)), ctx),
    forward.connectListener,
  );
  const routeUrls: Record<string, string> = {};
  for (const route of proxyRoutes) {
    if (!route.listen) continue;
    const s = await listen(
      'proxy',
      route.listen,
      `${route.keyPath}.listen`,
      createDedicatedListenerHandler(route, ctx),
      createUpgradeHandler(dedicatedRouteResolver(route), ctx),
    );
    routeUrls[route.name] = s.url;
  }

  const endpointCtx = { tokens, logger, observer: metrics.endpointObserver, failureLogs: ctx.failureLogs };
  const endpointUrls: Partial<Record<EndpointName, string>> = {};
  for (const e of endpointListeners(config, endpointCtx, subjectSource)) endpointUrls[e.name] = (await listen('endpoints', e.listen, e.key, e.handler)).url;

  let accepting = true;
  const admin = await listen('admin', config.admin.listen, 'admin.listen', createAdmin(metrics, { tokens, identity, accepting: () => accepting }));

  logger.info(
    {
      proxy: shared.url,
      admin: admin.url,
      routes: config.routes.map((r) => ({ name: r.name, host: r.host ?? null, listen: routeUrls[r.name] ?? null, upstream: r.upstream?.origin ?? null, intercept: r.intercept })),
      forward: { unmatched: config.forward.unmatched, caCert: interceptionCa?.certPath ?? null },
      // Issue 10 item 20: not { token: url }, which the redaction of every "token" key censors.
      endpoints: Object.entries(endpointUrls).map(([name, url]) => ({ name, url })),
      sts: `${config.sts.url.origin}${config.sts.url.pathname}`,
      subjectTokenSource: subjectSource.description,
      ...(identity ? { identity: describeIdentity(identity.current()) } : {}),
    },
    'sts-sidecar listening',
  );

  const warmedUp = tokens.warmUp();
  if (options.waitForTokens) await warmedUp;

  let closing: Promise<void> | undefined;
  return {
    proxyUrl: shared.url,
    adminUrl: admin.url,
    routeUrls,
    endpointUrls,
    tokens,
    logger,
    warmedUp,
    close(drainMs = config.shutdown.drainSeconds * 1000) {
      closing ??= (async () => {
        accepting = false;
        // Traffic drains first, the admin listener answers (not ready) until then.
        await Promise.all(servers.filter((s) => s !== admin).map((s) => s.close(drainMs)));
        await admin.close(0);
        await resources.close();
        logger.info('sts-sidecar stopped');
        logger.flush();
      })();
      return closing;
    },
  };
}

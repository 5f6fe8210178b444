/**
 * Wiring: config in, running sidecar out. The only place (with cli/) that knows every
 * part; each part only knows the interfaces it is handed.
 */
import { readFile } from 'node:fs/promises';
import type { RequestListener } from 'node:http';
import type { DestinationStream } from 'pino';
import { createAdminHandler } from './admin/server.js';
import { createMetrics } from './admin/metrics.js';
import { createEndpointMetrics } from './admin/endpoint-metrics.js';
import { createTokenProvider, type RouteExchange, type TokenProvider } from './cache/token-provider.js';
import type { Config, ListenAddress, RouteConfig } from './config/schema.js';
import type { WorkloadIdentity } from './tls/identity.js';
import { describeIdentity, openIdentityFromConfig } from './tls/identity-from-config.js';
import { openSecretSource } from './credentials/secret-source.js';
import { createSubjectTokenProvider } from './credentials/subject-token.js';
import { endpointListeners, type EndpointName } from './endpoints/index.js';
import { ConfigError } from './errors.js';
import { createLogger, type Logger } from './log/logger.js';
import { createRedactor, type Redactor } from './log/redact.js';
import { LogThrottle } from './log/throttle.js';
import { createDialPolicy } from './proxy/forward/dial-policy.js';
import { startProxyFromConfig } from './proxy/from-config.js';
import type { UpgradeListener } from './proxy/inbound.js';
import { listenerLimits, type ListenerKind } from './proxy/limits.js';
import { listenHttp, type ConnectListener, type ListeningServer } from './proxy/listen.js';
import { clientAuthFromConfig } from './sts/client-auth-from-config.js';
import { createStsClient, type StsClient } from './sts/client.js';

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
  const cleanups: Array<() => void | Promise<void>> = [];
  try {
    return await build(config, options, logger, redactor, cleanups);
  } catch (err) {
    for (const c of cleanups.reverse()) await c();
    throw err;
  }
}

async function build(config: Config, options: StartOptions, logger: Logger, redactor: Redactor, cleanups: Array<() => void | Promise<void>>): Promise<Sidecar> {
  const onSourceError = (what: string) => (err: unknown) =>
    logger.warn({ err, source: what }, 'could not re-read a credential file; keeping the previous value');

  const subjectSource = await openSecretSource(config.subjectToken, {
    keyPath: 'subjectToken',
    pollIntervalMs: config.subjectToken.pollIntervalSeconds * 1000,
    onError: onSourceError('subjectToken'),
  });
  cleanups.push(() => subjectSource.close());
  redactor.track(subjectSource);
  subjectSource.onChange(() => logger.info({ source: subjectSource.description }, 'subject token changed; exchanging ahead for active routes'));
  const subjectTokens = createSubjectTokenProvider(subjectSource, config.subjectToken.type);

  const sts = config.sts;
  let actorToken: { current(): string; type: string } | undefined;
  if (sts.actorToken) {
    const source = await openSecretSource(sts.actorToken, { keyPath: 'sts.actorToken', onError: onSourceError('sts.actorToken') });
    cleanups.push(() => source.close());
    redactor.track(source);
    actorToken = { current: () => source.current(), type: sts.actorToken.type };
  }

  let tokens: TokenProvider | undefined;
  let identity: WorkloadIdentity | undefined;
  const metrics = createMetrics(
    config.routes.map((r) => r.name),
    () => tokens?.status() ?? [],
    () => identity?.current().notAfter,
  );
  if (config.identity) {
    identity = await openIdentityFromConfig(config.identity, logger, metrics.identityObserver);
    cleanups.push(() => identity?.close());
  }

  const clientAuth = await clientAuthFromConfig(config, identity, cleanups, onSourceError('sts.clientAuth'), redactor);
  const stsClient: StsClient = createStsClient({
    url: sts.url,
    encoding: sts.encoding,
    jsonFieldNames: sts.jsonFieldNames,
    clientAuth,
    tls: {
      ca: sts.ca ? await readConfigFile(sts.ca, 'sts.ca') : undefined,
      servername: sts.servername,
      clientCertificate: sts.clientCertificate,
    },
    timeoutMs: sts.timeoutSeconds * 1000,
    maxResponseBytes: sts.maxResponseBytes,
    redactor,
  });
  cleanups.push(() => stsClient.close());

  tokens = createTokenProvider({
    routes: config.routes.map(routeExchange),
    subjectTokens,
    actorToken,
    identity,
    exchange: (params, generation) => stsClient.exchange(params, generation),
    refreshBeforeExpiryRatio: config.cache.refreshBeforeExpiryRatio,
    expirySkewMs: config.cache.expirySkewSeconds * 1000,
    retryInitialDelayMs: config.cache.retryInitialDelaySeconds * 1000,
    retryMaxDelayMs: config.cache.retryMaxDelaySeconds * 1000,
    maxEntries: config.cache.maxEntries,
    reexchangeAfter401IntervalMs: config.limits.reexchangeAfter401IntervalSeconds * 1000,
    redactor,
    observer: {
      ...metrics.tokenObserver,
      exchanged(route, result, seconds, error) {
        metrics.tokenObserver.exchanged?.(route, result, seconds, error);
        if (result === 'success') logger.debug({ route, ms: Math.round(seconds * 1000) }, 'token exchanged');
        else logger.warn({ route, result, err: error }, 'token exchange failed');
      },
    },
  });
  const tokenProvider = tokens;
  cleanups.push(() => tokenProvider.close());

  const failureLogs = new LogThrottle();
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

  const proxy = await startProxyFromConfig(config, {
    tokens: tokenProvider,
    logger,
    failureLogs,
    observers: metrics,
    dialPolicy,
    listen,
    defer: (close) => cleanups.push(close),
  });
  const { routeUrls } = proxy;

  const endpointCtx = { tokens: tokenProvider, logger, observer: createEndpointMetrics(metrics.registry, config.routes.map((r) => r.name)), failureLogs };
  const endpointUrls: Partial<Record<EndpointName, string>> = {};
  for (const e of endpointListeners(config, endpointCtx, subjectSource)) endpointUrls[e.name] = (await listen('endpoints', e.listen, e.key, e.handler)).url;

  let accepting = true;
  const admin = await listen(
    'admin',
    config.admin.listen,
    'admin.listen',
    createAdminHandler({ registry: metrics.registry, tokenStatus: () => tokenProvider.status(), accepting: () => accepting }),
  );

  logger.info(
    {
      proxy: proxy.proxyUrl,
      admin: admin.url,
      routes: config.routes.map((r) => ({ name: r.name, host: r.host ?? null, listen: routeUrls[r.name] ?? null, upstream: r.upstream?.origin ?? null, intercept: r.intercept })),
      forward: { unmatched: config.forward.unmatched, caCert: proxy.interceptionCaCert ?? null },
      // Issue 10 item 20: not { token: url }, which the redaction of every "token" key censors.
      endpoints: Object.entries(endpointUrls).map(([name, url]) => ({ name, url })),
      sts: `${sts.url.origin}${sts.url.pathname}`,
      subjectTokenSource: subjectSource.description,
      ...(identity ? { identity: describeIdentity(identity.current()) } : {}),
    },
    'sts-sidecar listening',
  );

  const warmedUp = tokenProvider.warmUp();
  if (options.waitForTokens) await warmedUp;

  let closing: Promise<void> | undefined;
  return {
    proxyUrl: proxy.proxyUrl,
    adminUrl: admin.url,
    routeUrls,
    endpointUrls,
    tokens: tokenProvider,
    logger,
    warmedUp,
    close(drainMs = config.shutdown.drainSeconds * 1000) {
      closing ??= (async () => {
        accepting = false;
        const proxies = servers.filter((s) => s !== admin);
        await Promise.all(proxies.map((s) => s.close(drainMs)));
        await admin.close(0);
        for (const c of cleanups.reverse()) await c();
        logger.info('sts-sidecar stopped');
        logger.flush();
      })();
      return closing;
    },
  };
}

function routeExchange(route: RouteConfig): RouteExchange {
  return {
    name: route.name,
    lazy: route.lazy,
    params: {
      audience: route.audience,
      resource: route.resource,
      scope: route.scope,
      requestedTokenType: route.requestedTokenType,
      options: route.options,
    },
  };
}

async function readConfigFile(path: string, keyPath: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(keyPath, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
  }
}

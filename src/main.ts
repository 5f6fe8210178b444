/**
 * The composition root: config in, running sidecar out. What lives as long as the sidecar
 * (logger, redactor, metrics, the dial policy, the listener pool, the admin handler) is built
 * here; everything built from one configuration is a generation (generation.ts), replaced
 * whole by a configuration reload (reload.ts, issue 13).
 */
import type { DestinationStream } from 'pino';
import { createAdmin, listenerList, metricsFromConfig } from './admin/from-config.js';
import { createReloadMetrics } from './admin/reload-metrics.js';
import { logListening } from './admin/startup-log.js';
import type { TokenProvider } from './cache/token-provider.js';
import { checkConfigFiles } from './config/check-files.js';
import { DEFAULT_STS_PROFILE, type Config, type LogLevel } from './config/schema.js';
import type { EndpointName } from './endpoints/index.js';
import { buildGeneration, type ServingGeneration, type Shared } from './generation.js';
import { watchConfigFile } from './lifecycle/config-watch.js';
import { createListenerPool } from './lifecycle/listener-pool.js';
import { waitForQuiet } from './lifecycle/quiet.js';
import { createLogger, type Logger } from './log/logger.js';
import { createRedactor } from './log/redact.js';
import { LogThrottle } from './log/throttle.js';
import { createDialPolicy } from './proxy/forward/dial-policy.js';
import { createReloader, type ReloadResult } from './reload.js';

export type { ReloadResult } from './reload.js';

export interface StartOptions {
  /** Where logs go (default stdout). Tests pass a stream to inspect them. */
  readonly logDestination?: DestinationStream;
  /** A logger of your own scrubs only what its own redactor knows, not this sidecar's secrets. */
  readonly logger?: Logger;
  /** Wait for the first exchange of every eager route before resolving (default false). */
  readonly waitForTokens?: boolean;
  /** The file `config` was read from: what reload() reads again. */
  readonly configFile?: string;
  /** Reload when `configFile` changes (kubelet `..data` swaps included); default false. */
  readonly watchConfig?: boolean;
  /** Overrides log.level, of this config and of every reloaded one (`run --log-level`). */
  readonly logLevel?: LogLevel | undefined;
}

export interface Sidecar {
  /** These read the generation serving now (a reload may move a listener). */
  readonly proxyUrl: string;
  readonly adminUrl: string;
  /** URL of each route's dedicated listener, by route name. */
  readonly routeUrls: Readonly<Record<string, string>>;
  /** URL of each configured local endpoint (token, gce, azure). */
  readonly endpointUrls: Readonly<Partial<Record<EndpointName, string>>>;
  readonly tokens: TokenProvider;
  readonly generation: number;
  readonly logger: Logger;
  /** Resolves once every eager route has had its first exchange (successful or not). */
  readonly warmedUp: Promise<void>;
  /** Applies `config`, or re-reads the config file; the serving configuration stays when it fails. */
  reload(config?: Config): Promise<ReloadResult>;
  close(drainMs?: number): Promise<void>;
}

export async function startSidecar(config: Config, options: StartOptions = {}): Promise<Sidecar> {
  // One redactor per sidecar (issue 10 item 23): its secrets live and die with it.
  const redactor = createRedactor();
  const logger = options.logger ?? createLogger(config.log.level, options.logDestination, redactor, config.log.format);
  let serving: ServingGeneration | undefined;
  const current = () => serving!;
  const metrics = metricsFromConfig(config, (route) => {
    const r = current().config.routes.find((c) => c.name === route);
    return r?.sts ?? DEFAULT_STS_PROFILE;
  });
  let accepting = true;
  // Issue 10 item 10: no relay back into any listener; item 11: with allowNonLoopback, other
  // hosts' requests are not relayed to local-only services.
  const dialPolicy = createDialPolicy({ refuseLocalDestinations: () => current().config.proxy.allowNonLoopback });
  const pool = createListenerPool({ observer: metrics.connectionObserver, dialPolicy });
  const adminHandler = createAdmin(metrics, {
    tokenStatus: () => current().tokens.status(),
    identity: () => current().identity,
    accepting: () => accepting,
    // What /status shows (issue 13): always the serving generation's.
    config: () => current().config,
    configInfo: () => ({ generation: current().number, file: options.configFile, loadedAt: current().loadedAt }),
    listeners: () => listenerList(current(), current().endpointUrls, current().adminUrl),
    subjectTokens: () => current().subjectTokens,
    dpopKey: () => current().dpopKeys?.current(),
  });
  const shared: Shared = { logger, redactor, metrics, dialPolicy, pool, failureLogs: new LogThrottle(), adminHandler };

  let first;
  try {
    first = await buildGeneration(config, 1, shared, undefined);
  } catch (err) {
    await pool.close();
    throw err;
  }
  await first.commit(undefined, 0);
  serving = first;
  logListening(logger, config, { ...first, subjectTokenSource: first.subjectSource.description });

  /** Generations replaced by a reload whose last requests are still being served. */
  const retiring = new Set<ServingGeneration>();
  const reloadObserver = createReloadMetrics(metrics.registry, 1);
  const reloader = createReloader({
    file: options.configFile,
    logger,
    observer: reloadObserver,
    // Issue 13: the files a new config names are opened before anything is built from it.
    checkFiles: checkConfigFiles,
    target: {
      get generation() {
        return current().number;
      },
      get config() {
        return current().config;
      },
      async apply(next) {
        const previous = current();
        const pending = await buildGeneration(next, previous.number + 1, shared, previous);
        const drainMs = next.shutdown.drainSeconds * 1000;
        const carriedRoutes = await pending.commit(previous, drainMs);
        serving = pending;
        metrics.knowRoutes(next.routes.map((r) => r.name));
        metrics.bindingInfo(next);
        logger.level = options.logLevel ?? next.log.level;
        void pending.tokens.warmUp();
        retiring.add(previous);
        // Its upstream pools and watchers close once its last request is done (bounded).
        const maxWaitMs = Math.max(next.limits.requestTimeoutSeconds, next.limits.idleTimeoutSeconds) * 1000;
        void previous.retire(pending, maxWaitMs).finally(() => retiring.delete(previous));
        return { carriedRoutes };
      },
    },
  });
  const watcher = options.configFile && options.watchConfig ? watchConfigFile(options.configFile, { onChange: () => void reloader.reload(), logger }) : undefined;

  const warmedUp = first.tokens.warmUp();
  if (options.waitForTokens) await warmedUp;

  const inFlight = () => [current(), ...retiring].reduce((n, g) => n + g.inFlight(), 0);
  let closing: Promise<void> | undefined;
  return {
    get proxyUrl() {
      return current().proxyUrl;
    },
    get adminUrl() {
      return current().adminUrl;
    },
    get routeUrls() {
      return current().routeUrls;
    },
    get endpointUrls() {
      return current().endpointUrls;
    },
    get tokens() {
      return current().tokens;
    },
    get generation() {
      return current().number;
    },
    logger,
    warmedUp,
    reload: (next) => reloader.reload(next),
    close(drainMs = current().config.shutdown.drainSeconds * 1000) {
      closing ??= (async () => {
        watcher?.close();
        accepting = false;
        // Readiness fails now; listeners keep accepting until nothing has been in flight for
        // shutdown.idleSeconds or the drain window ends (issue 13). Then they stop, and what
        // is still in flight has the rest of the window.
        const started = Date.now();
        await waitForQuiet({ inFlight, idleMs: current().config.shutdown.idleSeconds * 1000, windowMs: drainMs });
        await pool.drain(Math.max(0, drainMs - (Date.now() - started)), 'admin');
        await pool.close();
        await Promise.all([...retiring, current()].map((g) => g.retire(undefined, 0)));
        logger.info('sts-sidecar stopped');
        logger.flush();
      })();
      return closing;
    },
  };
}

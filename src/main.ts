/**
 * The composition root: config in, running sidecar out. Each area is built from its own
 * `*-from-config`, in dependency order so nothing is bound late; whatever is opened leaves
 * its close on one stack of resources, closed in reverse on shutdown or a failed start.
 */
import type { DestinationStream } from 'pino';
import { withExchangeLogs } from './admin/exchange-log.js';
import { createAdmin, metricsFromConfig } from './admin/from-config.js';
import { logListening } from './admin/startup-log.js';
import { tokenProviderFromConfig } from './cache/from-config.js';
import { dpopKeysFromConfig } from './dpop/from-config.js';
import type { TokenProvider } from './cache/token-provider.js';
import type { Config } from './config/schema.js';
import { credentialsFromConfig, logSourceError } from './credentials/from-config.js';
import { endpointListeners, type EndpointName } from './endpoints/index.js';
import { createListenerSet } from './lifecycle/listeners.js';
import { Resources } from './lifecycle/resources.js';
import { createLogger, type Logger } from './log/logger.js';
import { createRedactor, type Redactor } from './log/redact.js';
import { LogThrottle } from './log/throttle.js';
import { createDialPolicy } from './proxy/forward/dial-policy.js';
import { startProxyFromConfig } from './proxy/from-config.js';
import { stsClientFromConfig } from './sts/client-from-config.js';
import { identityFromConfig } from './tls/identity-from-config.js';

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
  const dpopKeys = await dpopKeysFromConfig(config, { logger, resources });
  const tokens = tokenProviderFromConfig(config, { subjectTokens, actorToken, identity, dpopKeys, stsClient, observer, redactor, resources });

  // Issue 10 item 10: no relay back into any listener; item 11: with allowNonLoopback, other
  // hosts' requests are not relayed to local-only services.
  const dialPolicy = createDialPolicy({ refuseLocalDestinations: config.proxy.allowNonLoopback });
  const { listen, drain } = createListenerSet(config, { observer: metrics.connectionObserver, dialPolicy, resources });
  const failureLogs = new LogThrottle();
  const proxy = await startProxyFromConfig(config, { tokens, logger, failureLogs, observers: metrics, dialPolicy, listen, defer: (close) => resources.defer(close) });

  const endpointCtx = { tokens, logger, observer: metrics.endpointObserver, failureLogs };
  const endpointUrls: Partial<Record<EndpointName, string>> = {};
  for (const e of endpointListeners(config, endpointCtx, subjectSource)) endpointUrls[e.name] = (await listen('endpoints', e.listen, e.key, e.handler)).url;

  let accepting = true;
  const admin = await listen('admin', config.admin.listen, 'admin.listen', createAdmin(metrics, { tokens, identity, accepting: () => accepting }));
  logListening(logger, config, { ...proxy, adminUrl: admin.url, endpointUrls, subjectTokenSource: subjectSource.description, identity });

  const warmedUp = tokens.warmUp();
  if (options.waitForTokens) await warmedUp;

  let closing: Promise<void> | undefined;
  return {
    proxyUrl: proxy.proxyUrl,
    adminUrl: admin.url,
    routeUrls: proxy.routeUrls,
    endpointUrls,
    tokens,
    logger,
    warmedUp,
    close(drainMs = config.shutdown.drainSeconds * 1000) {
      closing ??= (async () => {
        accepting = false;
        // Traffic drains first, the admin listener answers (not ready) until then.
        await drain(drainMs, admin);
        await admin.close(0);
        await resources.close();
        logger.info('sts-sidecar stopped');
        logger.flush();
      })();
      return closing;
    },
  };
}

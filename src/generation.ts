/**
 * One generation of the sidecar: every part built from one configuration (credentials, the
 * STS client, the token cache, the proxy, the local endpoints) and the listeners it claims.
 * The first generation starts the sidecar; each configuration reload builds the next beside
 * the serving one (issue 13), and either commits it (its handlers take over the listeners)
 * or aborts it (nothing the serving one uses is touched).
 *
 * What outlives a generation is in `Shared` (logger, redactor, metrics, dial policy, the
 * listener pool); what a reload keeps when its settings did not change is carried over
 * (the identity, a generated interception CA: lifecycle/carry-over.ts), and so are the
 * cached tokens of routes whose exchange did not change (cache/token-provider.ts handOver).
 */
import type { RequestListener } from 'node:http';
import { withExchangeLogs } from './admin/exchange-log.js';
import type { AdminMetrics } from './admin/from-config.js';
import type { SubjectTokenInfo } from './admin/status.js';
import { routeFingerprints, tokenProviderFromConfig } from './cache/from-config.js';
import type { TokenProvider } from './cache/token-provider.js';
import type { Config } from './config/schema.js';
import type { SecretSource } from './credentials/secret-source.js';
import { credentialsFromConfig, logSourceError } from './credentials/from-config.js';
import { dpopKeysFromConfig } from './dpop/from-config.js';
import { endpointListeners, type EndpointName } from './endpoints/index.js';
import { CarriedParts } from './lifecycle/carry-over.js';
import { createInFlight, type ListenerClaims, type ListenerPool } from './lifecycle/listener-pool.js';
import { Resources } from './lifecycle/resources.js';
import type { Logger } from './log/logger.js';
import type { Redactor } from './log/redact.js';
import type { LogThrottle } from './log/throttle.js';
import type { DialPolicy } from './proxy/forward/dial-policy.js';
import { startProxyFromConfig } from './proxy/from-config.js';
import { stsClientsFromConfig } from './sts/profiles-from-config.js';
import { usesDpop } from './sts/profiles.js';
import type { WorkloadIdentity } from './tls/identity.js';
import { identityFromConfig } from './tls/identity-from-config.js';

/** What every generation shares: it lives as long as the sidecar. */
export interface Shared {
  readonly logger: Logger;
  readonly redactor: Redactor;
  readonly metrics: AdminMetrics;
  readonly dialPolicy: DialPolicy;
  readonly pool: ListenerPool;
  readonly failureLogs: LogThrottle;
  /** The admin listener's handler: one for the sidecar's life, reading the serving generation. */
  readonly adminHandler: RequestListener;
}

export interface Generation {
  readonly number: number;
  readonly config: Config;
  readonly tokens: TokenProvider;
  readonly identity: WorkloadIdentity | undefined;
  readonly subjectSource: SecretSource;
  readonly proxyUrl: string;
  readonly adminUrl: string;
  readonly routeUrls: Readonly<Record<string, string>>;
  readonly endpointUrls: Readonly<Partial<Record<EndpointName, string>>>;
  readonly interceptionCaCert: string | undefined;
  /** Each distinct subject token, by the key path that names it (for /status; never the value). */
  readonly subjectTokens: readonly SubjectTokenInfo[];
  /** The DPoP key, when a route has `binding: dpop` (issue 16). */
  readonly dpopKeys: { current(): { readonly algorithm: string; readonly thumbprint: string } } | undefined;
  /** When this generation was built (ISO time). */
  readonly loadedAt: string;
  /** What it keeps for the next generation: identity, interception CA, DPoP key. */
  readonly carried: CarriedParts;
  /** Requests (and tunnels) this generation's handlers are serving now. */
  inFlight(): number;
}

/** A generation built but not yet serving (it serves once committed). */
export interface PendingGeneration extends ServingGeneration {
  /**
   * Takes over from `previous`: the tokens of unchanged routes are handed over, then the
   * listeners switch to this generation's handlers (those it no longer claims drain for
   * `drainMs`). Returns the names of the routes whose tokens were carried over.
   */
  commit(previous: ServingGeneration | undefined, drainMs: number): Promise<string[]>;
  /** Closes everything this generation opened; the serving generation is untouched. */
  abort(): Promise<void>;
}

export interface ServingGeneration extends Generation {
  /**
   * Once its last request has finished (or `maxWaitMs` passed), closes what this generation
   * opened and what `next` did not carry over.
   */
  retire(next: ServingGeneration | undefined, maxWaitMs: number): Promise<void>;
}

export async function buildGeneration(config: Config, number: number, shared: Shared, previous: ServingGeneration | undefined): Promise<PendingGeneration> {
  const resources = new Resources();
  const carried = new CarriedParts(previous?.carried);
  const inFlight = createInFlight();
  const claims = shared.pool.claims(config, inFlight);
  try {
    return await build(config, number, shared, { resources, carried, inFlight, claims });
  } catch (err) {
    await claims.abort();
    await carried.abort();
    await resources.close();
    throw err;
  }
}

interface Owned {
  readonly resources: Resources;
  readonly carried: CarriedParts;
  readonly inFlight: ReturnType<typeof createInFlight>;
  readonly claims: ListenerClaims;
}


async function build(config: Config, number: number, shared: Shared, own: Owned): Promise<PendingGeneration> {
  const { logger, redactor, metrics } = shared;
  const { resources, carried, claims } = own;
  const credentials = await credentialsFromConfig(config, { logger, redactor, resources });
  const identity = await carried.keep('identity', config.identity, (res) => identityFromConfig(config, { logger, observer: metrics.identityObserver, resources: res }));
  const stsClients = await stsClientsFromConfig(config, { identity, redactor, resources, onSourceError: (key) => logSourceError(logger, key) });
  const observer = withExchangeLogs(metrics.tokenObserver, logger);
  // A reload keeps the DPoP key while dpop.* is unchanged (issue 16): tokens bound to it stay good.
  const dpopSettings = { dpop: config.dpop, used: usesDpop(config) };
  const dpopKeys = await carried.keep('dpop-key', dpopSettings, (res) => dpopKeysFromConfig(config, { logger, resources: res }));
  const tokens = tokenProviderFromConfig(config, { credentials, stsClients, identity, dpopKeys, observer, redactor, resources });

  const proxy = await startProxyFromConfig(config, {
    tokens,
    logger,
    failureLogs: shared.failureLogs,
    observers: metrics,
    dialPolicy: shared.dialPolicy,
    listen: claims.listen,
    defer: (close) => resources.defer(close),
    carryOver: carried,
  });
  const endpointCtx = { tokens, logger, observer: metrics.endpointObserver, failureLogs: shared.failureLogs };
  const endpointUrls: Partial<Record<EndpointName, string>> = {};
  for (const e of endpointListeners(config, endpointCtx, (route) => credentials.forRoute(route).source)) endpointUrls[e.name] = (await claims.listen('endpoints', e.listen, e.key, e.handler)).url;
  const admin = await claims.listen('admin', config.admin.listen, 'admin.listen', shared.adminHandler);

  const generation: PendingGeneration & ServingGeneration = {
    number,
    config,
    tokens,
    identity,
    subjectSource: credentials.subjectSource,
    subjectTokens: credentials.subjectTokenSources.map((o) => ({ name: o.keyPath, description: o.source.description, current: () => o.tokens.current() })),
    loadedAt: new Date().toISOString(),
    dpopKeys,
    proxyUrl: proxy.proxyUrl,
    adminUrl: admin.url,
    routeUrls: proxy.routeUrls,
    endpointUrls,
    interceptionCaCert: proxy.interceptionCaCert,
    carried,
    inFlight: () => own.inFlight.count,
    async commit(previous, drainMs) {
      let kept: string[] = [];
      if (previous) {
        // Routes whose exchange is the same (parameters, STS, subject token, identity): their
        // tokens move over, so a reload causes no exchange for them (issue 13).
        const before = routeFingerprints(previous.config);
        const unchanged = new Set([...routeFingerprints(config)].filter(([name, print]) => before.get(name) === print).map(([name]) => name));
        const handed = await previous.tokens.handOver(unchanged);
        tokens.adopt(handed);
        kept = [...new Set(handed.map((c) => c.route))];
      }
      // The swap happens before commit's first await; retired listeners then drain on their own.
      void claims.commit(drainMs).catch((err: unknown) => shared.logger.warn({ err }, 'a listener the new configuration no longer uses did not close cleanly'));
      return kept;
    },
    async abort() {
      await claims.abort();
      await carried.abort();
      await resources.close();
    },
    async retire(next, maxWaitMs) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([own.inFlight.whenIdle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, maxWaitMs)))]);
      clearTimeout(timer);
      await resources.close();
      await carried.retire(next?.carried);
    },
  };
  return generation;
}

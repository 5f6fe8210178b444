/**
 * The admin side of the sidecar in the order main.ts needs it: the metrics first (every
 * part reports to them as it is built), then, once the token cache and the identity exist,
 * the admin listener's handler and the gauges that read their state.
 */
import type { RequestListener } from 'node:http';
import { Gauge } from 'prom-client';
import type { RouteTokenStatus } from '../cache/token-provider.js';
import { DEFAULT_STS_PROFILE, type Config } from '../config/schema.js';
import type { WorkloadIdentity } from '../tls/identity.js';
import { createMetrics, type SidecarMetrics } from './metrics.js';
import { METRIC_PREFIX } from './names.js';
import { createAdminHandler } from './server.js';
import { statusReport, type ConfigInfo, type ListenerInfo, type SubjectTokenInfo } from './status.js';
import { createStsResults, type StsResults } from './sts-results.js';
import { registerStateGauges } from './state-gauges.js';
import { effectiveBinding, stsProfileConfigs } from '../sts/profiles.js';

export type { ConfigInfo, ListenerInfo, SubjectTokenInfo } from './status.js';

/** The metrics, with the token observer also recording each STS profile's last result for /status. */
export interface AdminMetrics extends SidecarMetrics {
  readonly stsResults: StsResults;
  /** Sets sts_sidecar_route_binding_info from a config (at start and at each reload). */
  readonly bindingInfo: (config: Config) => void;
}

/** `profileOf`: a route's STS profile now (a reload may change it); default: as in `config`. */
export function metricsFromConfig(config: Config, profileOf?: (route: string) => string): AdminMetrics {
  const metrics = createMetrics(config.routes.map((r) => r.name));
  const profiles = new Map(config.routes.map((r) => [r.name, r.sts]));
  const stsResults = createStsResults(profileOf ?? ((route) => profiles.get(route) ?? DEFAULT_STS_PROFILE));
  const bindingInfo = registerBindingInfo(metrics);
  bindingInfo(config);
  return { ...metrics, tokenObserver: stsResults.observe(metrics.tokenObserver), stsResults, bindingInfo };
}

/**
 * Issue 16: how each route's tokens are bound (none, certificate per RFC 8705, dpop per RFC
 * 9449), as an info metric joined on `route`, so the existing exchange and request series
 * keep their labels.
 */
function registerBindingInfo(metrics: SidecarMetrics): (config: Config) => void {
  const info = new Gauge({
    name: `${METRIC_PREFIX}route_binding_info`,
    help: 'How each route binds its tokens: none, certificate (RFC 8705, identity over mTLS to the STS) or dpop (RFC 9449); always 1.',
    labelNames: ['route', 'binding'] as const,
    registers: [metrics.registry],
  });
  return (config) => {
    info.reset();
    const profiles = new Map(stsProfileConfigs(config).map((p) => [p.name, p.sts]));
    for (const r of config.routes) {
      const certificate = config.identity !== undefined && (profiles.get(r.sts) ?? config.sts).clientCertificate;
      const binding = effectiveBinding(config, r).binding === 'dpop' ? 'dpop' : certificate ? 'certificate' : 'none';
      info.labels(r.name, binding).set(1);
      metrics.setBinding(r.name, binding);
    }
  };
}

/** Read on every request: a configuration reload replaces the cache and may replace the identity. */
export interface AdminState {
  tokenStatus(): RouteTokenStatus[];
  identity(): WorkloadIdentity | undefined;
  /** False while shutting down: readiness fails first so traffic drains away. */
  accepting(): boolean;
  /** The config /status describes (a function: a reload may replace it). */
  config?(): Config;
  /** The config's generation and file; without it, generation 1 loaded at start-up. */
  configInfo?(): ConfigInfo;
  /** Every listener and its bound URL (read when /status is asked, after all are bound). */
  listeners?(): readonly ListenerInfo[];
  /** Each subject token source, by its config key. */
  subjectTokens?(): readonly SubjectTokenInfo[];
  /** The DPoP key's public facts, when one is in use (issue 16). */
  dpopKey?(): { readonly algorithm: string; readonly thumbprint: string } | undefined;
}

export function createAdmin(metrics: AdminMetrics, state: AdminState): RequestListener {
  const { tokenStatus, identity, accepting } = state;
  registerStateGauges(metrics.registry, { tokenStatus, identityExpiry: () => identity()?.current().notAfter });
  const startedAt = new Date().toISOString();
  const status = state.config
    ? () =>
        statusReport({
          config: () => state.config!(),
          configInfo: () => state.configInfo?.() ?? { generation: 1, loadedAt: startedAt },
          listeners: () => state.listeners?.() ?? [],
          tokenStatus,
          identity: () => identity()?.current(),
          subjectTokens: () => state.subjectTokens?.() ?? [],
          stsResults: () => metrics.stsResults.last(),
          accepting,
          dpopKey: () => state.dpopKey?.(),
        })
    : undefined;
  return createAdminHandler({ registry: metrics.registry, tokenStatus, accepting, ...(status ? { status } : {}) });
}

/** The listeners as /status lists them: the shared proxy, each route's own, each endpoint, admin. */
export function listenerList(proxy: { readonly proxyUrl: string; readonly routeUrls: Readonly<Record<string, string>> }, endpointUrls: Readonly<Record<string, string>>, adminUrl: string): ListenerInfo[] {
  return [
    { kind: 'proxy', name: 'proxy', url: proxy.proxyUrl },
    ...Object.entries(proxy.routeUrls).map(([name, url]) => ({ kind: 'route', name, url })),
    ...Object.entries(endpointUrls).map(([name, url]) => ({ kind: 'endpoint', name, url })),
    { kind: 'admin', name: 'admin', url: adminUrl },
  ];
}

/**
 * The admin side of the sidecar in the order main.ts needs it: the metrics first (every
 * part reports to them as it is built), then, once the token cache and the identity exist,
 * the admin listener's handler and the gauges that read their state.
 */
import type { RequestListener } from 'node:http';
import { Gauge } from 'prom-client';
import type { TokenProvider } from '../cache/token-provider.js';
import type { Config } from '../config/schema.js';
import type { WorkloadIdentity } from '../tls/identity.js';
import { createMetrics, type SidecarMetrics } from './metrics.js';
import { METRIC_PREFIX } from './names.js';
import { createAdminHandler } from './server.js';
import { registerStateGauges } from './state-gauges.js';

export function metricsFromConfig(config: Config): SidecarMetrics {
  const metrics = createMetrics(config.routes.map((r) => r.name));
  registerBindingInfo(metrics, config);
  return metrics;
}

/**
 * Issue 16: how each route's tokens are bound (none, certificate per RFC 8705, dpop per RFC
 * 9449), as an info metric joined on `route`, so the existing exchange and request series
 * keep their labels.
 */
function registerBindingInfo(metrics: SidecarMetrics, config: Config): void {
  const info = new Gauge({
    name: `${METRIC_PREFIX}route_binding_info`,
    help: 'How each route binds its tokens: none, certificate (RFC 8705, identity over mTLS to the STS) or dpop (RFC 9449); always 1.',
    labelNames: ['route', 'binding'] as const,
    registers: [metrics.registry],
  });
  const certificate = config.identity !== undefined && config.sts.clientCertificate;
  for (const r of config.routes) info.labels(r.name, r.binding === 'dpop' ? 'dpop' : certificate ? 'certificate' : 'none').set(1);
}

export interface AdminState {
  readonly tokens: TokenProvider;
  readonly identity: WorkloadIdentity | undefined;
  /** False while shutting down: readiness fails first so traffic drains away. */
  accepting(): boolean;
}

export function createAdmin(metrics: SidecarMetrics, { tokens, identity, accepting }: AdminState): RequestListener {
  registerStateGauges(metrics.registry, { tokenStatus: () => tokens.status(), identityExpiry: () => identity?.current().notAfter });
  return createAdminHandler({ registry: metrics.registry, tokenStatus: () => tokens.status(), accepting });
}

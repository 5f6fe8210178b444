/**
 * The admin side of the sidecar in the order main.ts needs it: the metrics first (every
 * part reports to them as it is built), then, once the token cache and the identity exist,
 * the admin listener's handler and the gauges that read their state.
 */
import type { RequestListener } from 'node:http';
import type { RouteTokenStatus } from '../cache/token-provider.js';
import type { Config } from '../config/schema.js';
import type { WorkloadIdentity } from '../tls/identity.js';
import { createMetrics, type SidecarMetrics } from './metrics.js';
import { createAdminHandler } from './server.js';
import { registerStateGauges } from './state-gauges.js';

export function metricsFromConfig(config: Config): SidecarMetrics {
  return createMetrics(config.routes.map((r) => r.name));
}

/** Read on every request: a configuration reload replaces the cache and may replace the identity. */
export interface AdminState {
  tokenStatus(): RouteTokenStatus[];
  identity(): WorkloadIdentity | undefined;
  /** False while shutting down: readiness fails first so traffic drains away. */
  accepting(): boolean;
}

export function createAdmin(metrics: SidecarMetrics, { tokenStatus, identity, accepting }: AdminState): RequestListener {
  registerStateGauges(metrics.registry, { tokenStatus, identityExpiry: () => identity()?.current().notAfter });
  return createAdminHandler({ registry: metrics.registry, tokenStatus, accepting });
}

/**
 * The admin side of the sidecar in the order main.ts needs it: the metrics first (every
 * part reports to them as it is built), then, once the token cache and the identity exist,
 * the admin listener's handler and the gauges that read their state.
 */
import type { RequestListener } from 'node:http';
import type { TokenProvider } from '../cache/token-provider.js';
import type { Config } from '../config/schema.js';
import type { WorkloadIdentity } from '../tls/identity.js';
import { createMetrics, type SidecarMetrics } from './metrics.js';
import { createAdminHandler } from './server.js';
import { registerStateGauges } from './state-gauges.js';

export function metricsFromConfig(config: Config): SidecarMetrics {
  return createMetrics(config.routes.map((r) => r.name));
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

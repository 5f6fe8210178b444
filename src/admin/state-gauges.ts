/**
 * Gauges read from the parts' state at scrape time: each route's token, the workload
 * certificate. Registered once the token cache and the identity exist, so nothing is
 * bound late (issue 11 item 4).
 */
import { Gauge, type Registry } from 'prom-client';
import type { RouteTokenStatus } from '../cache/token-provider.js';
import { METRIC_PREFIX } from './names.js';

export interface ObservedState {
  tokenStatus(): RouteTokenStatus[];
  /** The current certificate's notAfter; undefined without an identity. */
  identityExpiry(): Date | undefined;
}

export function registerStateGauges(registry: Registry, state: ObservedState): void {
  new Gauge({
    name: `${METRIC_PREFIX}token_expiry_seconds`,
    help: "Seconds until the route's current token expires (absent until a token was issued; 0 once expired).",
    labelNames: ['route'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of state.tokenStatus()) if (s.expiresInSeconds !== undefined) this.set({ route: s.route }, s.expiresInSeconds);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}token_valid`,
    help: '1 when the route holds a token that may be injected now, else 0.',
    labelNames: ['route'] as const,
    registers: [registry],
    collect() {
      for (const s of state.tokenStatus()) this.set({ route: s.route }, s.valid ? 1 : 0);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}identity_certificate_expiry_seconds`,
    help: "Seconds until the workload identity's current certificate expires (absent without an identity).",
    registers: [registry],
    collect() {
      const notAfter = state.identityExpiry();
      this.reset();
      if (notAfter) this.set(Math.max(0, (notAfter.getTime() - Date.now()) / 1000));
    },
  });
}

/**
 * Metrics of configuration reloads (issue 13): how many were tried and how they ended, the
 * generation serving now, and when the last one succeeded (alert when the file changed but
 * this did not move).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from './names.js';

export interface ReloadObserver {
  /** `generation` now serves; `at` in ms since the epoch. */
  succeeded(generation: number, at: number): void;
  failed(): void;
}

export function createReloadMetrics(registry: Registry, firstGeneration: number): ReloadObserver {
  const reloads = new Counter({
    name: `${METRIC_PREFIX}config_reloads_total`,
    help: 'Configuration reloads (SIGHUP or a change of the config file), by result (success, failure: the previous configuration keeps serving).',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  reloads.labels('success').inc(0);
  reloads.labels('failure').inc(0);
  const generation = new Gauge({
    name: `${METRIC_PREFIX}config_generation`,
    help: 'The configuration generation serving now: 1 at start, one more at each successful reload.',
    registers: [registry],
  });
  generation.set(firstGeneration);
  const lastSuccess = new Gauge({
    name: `${METRIC_PREFIX}config_last_reload_success_timestamp_seconds`,
    help: 'When the configuration serving now was applied (start-up or the last successful reload), in seconds since the epoch.',
    registers: [registry],
  });
  lastSuccess.set(Date.now() / 1000);
  return {
    succeeded(g, at) {
      reloads.labels('success').inc();
      generation.set(g);
      lastSuccess.set(at / 1000);
    },
    failed: () => reloads.labels('failure').inc(),
  };
}

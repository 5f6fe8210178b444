/**
 * Metrics of the local token and metadata endpoints (issue 6), on the sidecar's registry.
 * Labels are bounded: the endpoint from a closed set, routes from the config ("none"
 * before a route was chosen), status classes.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { EndpointObserver } from '../endpoints/context.js';
import { METRIC_PREFIX, statusClass } from './names.js';

/** `known`: the configured route names, read at each count (a reload adds to it). */
export function createEndpointMetrics(registry: Registry, known: ReadonlySet<string>): EndpointObserver {
  const requests = new Counter({
    name: `${METRIC_PREFIX}endpoint_requests_total`,
    help: 'Requests to the local token endpoint and metadata emulations, by endpoint (token, gce, azure), route ("none" when refused before routing) and status class.',
    labelNames: ['endpoint', 'route', 'status_class'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: `${METRIC_PREFIX}endpoint_request_duration_seconds`,
    help: 'Time from receiving an endpoint request to the end of its response (includes waiting for an exchange).',
    labelNames: ['endpoint'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  return {
    finished(endpoint, route, statusCode, seconds) {
      requests.labels(endpoint, route !== undefined && known.has(route) ? route : 'none', statusClass(statusCode)).inc();
      duration.labels(endpoint).observe(seconds);
    },
  };
}

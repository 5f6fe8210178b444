/**
 * Prometheus metrics (prom-client). Names follow <namespace>_<area>_<thing>_<unit>;
 * label values are bounded: route names come from the config, results and status
 * classes from closed sets. Never a path, a host from a request, or a token.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TokenProviderObserver } from '../cache/token-provider.js';
import type { EndpointObserver } from '../endpoints/context.js';
import { exchangeResult } from './exchange-result.js';
import type { ProxyObserver } from '../proxy/context.js';
import type { ForwardObserver } from '../proxy/forward/types.js';
import type { ConnectionObserver, ListenerKind } from '../proxy/limits.js';
import type { IdentityObserver } from '../tls/identity-from-config.js';
import { createEndpointMetrics } from './endpoint-metrics.js';
import { METRIC_PREFIX, statusClass } from './names.js';

export { METRIC_PREFIX, statusClass };

export interface SidecarMetrics {
  readonly registry: Registry;
  readonly tokenObserver: TokenProviderObserver;
  readonly proxyObserver: ProxyObserver;
  readonly forwardObserver: ForwardObserver;
  readonly identityObserver: IdentityObserver;
  readonly connectionObserver: ConnectionObserver;
  readonly endpointObserver: EndpointObserver;
  /**
   * Route names a reloaded configuration adds (issue 13). Names are never forgotten, so the
   * series of a removed route stay; the label stays bounded by the names ever configured.
   */
  knowRoutes(routeNames: readonly string[]): void;
  /** How a route's tokens are bound (none, certificate, dpop): the `binding` label (issue 16). */
  setBinding(route: string, binding: TokenBinding): void;
}

/** How a route's tokens are bound: not at all, to the identity's certificate (RFC 8705), to the DPoP key (RFC 9449). */
export type TokenBinding = 'none' | 'certificate' | 'dpop';

/**
 * The registry and the observers the parts report to. Gauges that read a part's state
 * (token expiry, identity expiry) are registered once that part exists: state-gauges.ts.
 */
export function createMetrics(routeNames: readonly string[]): SidecarMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const known = new Set(routeNames);
  // Anything not configured is folded into one value so a label can never grow without bound.
  const routeLabel = (route: string) => (known.has(route) ? route : 'unmatched');
  const bindings = new Map<string, TokenBinding>();
  const bindingLabel = (route: string): TokenBinding => bindings.get(route) ?? 'none';

  const exchanges = new Counter({
    name: `${METRIC_PREFIX}sts_exchanges_total`,
    help: 'Token exchanges at the STS, by route, result (success, oauth_error, invalid_response, timeout, unreachable, server_error, subject_token_error, binding_mismatch, error) and the binding asked for (none, certificate, dpop).',
    labelNames: ['route', 'result', 'binding'] as const,
    registers: [registry],
  });
  const exchangeDuration = new Histogram({
    name: `${METRIC_PREFIX}sts_exchange_duration_seconds`,
    help: 'Duration of token exchanges at the STS, successful or not.',
    labelNames: ['route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  // Hot-path counters are plain numbers, copied into prom-client when scraped: a bound
  // prom-client child still hashes its labels on every inc(), which showed in profiles.
  const hitTally = new Tally('route');
  new Counter({
    name: `${METRIC_PREFIX}token_cache_hits_total`,
    help: 'Token lookups answered from the cache.',
    labelNames: ['route'] as const,
    registers: [registry],
    collect() {
      hitTally.publish(this);
    },
  });
  const cacheMisses = new Counter({
    name: `${METRIC_PREFIX}token_cache_misses_total`,
    help: 'Token lookups that had to wait for an exchange (or failed for want of one).',
    labelNames: ['route'] as const,
    registers: [registry],
  });
  const invalidations = new Counter({
    name: `${METRIC_PREFIX}token_invalidations_total`,
    help: 'Cached tokens dropped because the upstream rejected them with 401.',
    labelNames: ['route'] as const,
    registers: [registry],
  });
  const invalidationsRefused = new Counter({
    name: `${METRIC_PREFIX}token_invalidations_refused_total`,
    help: 'Upstream 401s that did not drop the token: the route already had one within limits.reexchangeAfter401IntervalSeconds.',
    labelNames: ['route'] as const,
    registers: [registry],
  });
  const requestTally = new Tally('route', 'status_class', 'protocol', 'grpc_status', 'binding');
  new Counter({
    name: `${METRIC_PREFIX}proxy_requests_total`,
    help: 'Requests and upgrades handled by the proxy, by route ("unmatched" when none), response status class (1xx..5xx; "aborted" when the response never completed), protocol (h1, h2), gRPC status (the code\'s name, e.g. ok, unavailable; "none" when not gRPC) and the route\'s token binding (none, certificate, dpop).',
    labelNames: ['route', 'status_class', 'protocol', 'grpc_status', 'binding'] as const,
    registers: [registry],
    collect() {
      requestTally.publish(this);
    },
  });
  const requestDuration = new Histogram({
    name: `${METRIC_PREFIX}proxy_request_duration_seconds`,
    help: 'Time from receiving a request to the end of its response, by route.',
    labelNames: ['route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const retries = new Counter({
    name: `${METRIC_PREFIX}proxy_upstream_401_retries_total`,
    help: 'Requests retried once with a fresh token after the upstream answered 401.',
    labelNames: ['route'] as const,
    registers: [registry],
  });

  const forwarded = new Counter({
    name: `${METRIC_PREFIX}forward_requests_total`,
    help: 'Forward-proxy decisions: kind = absolute | connect | tunnel_request, result = routed | passthrough | denied | invalid | http | intercepted | not_intercepted | tunnelled | unreachable | loop.',
    labelNames: ['kind', 'result'] as const,
    registers: [registry],
  });
  const forwardObserver: ForwardObserver = { forwarded: (kind, result) => forwarded.labels(kind, result).inc() };
  const bindingMismatches = new Counter({
    name: `${METRIC_PREFIX}token_binding_mismatches_total`,
    help: 'Issued tokens discarded because their cnf.x5t#S256 named another certificate than the workload identity (RFC 8705 3.1).',
    labelNames: ['route'] as const,
    registers: [registry],
  });
  const rotations = new Counter({
    name: `${METRIC_PREFIX}identity_rotations_total`,
    help: 'Workload identity rotations taken (a new certificate and key became current).',
    registers: [registry],
  });
  const reloadErrors = new Counter({
    name: `${METRIC_PREFIX}identity_reload_errors_total`,
    help: 'Rotated identity files that could not be used (unreadable, mismatched key, expired); the previous identity was kept.',
    registers: [registry],
  });

  // Issue 10 items 1-3: what each listener kind holds open, and what the sidecar cut and why.
  const openConnections: Record<ListenerKind, number> = { proxy: 0, admin: 0, endpoints: 0 };
  new Gauge({
    name: `${METRIC_PREFIX}connections_open`,
    help: 'Connections open on the listeners of a kind (listener = proxy | admin | endpoints), tunnels and upgrades included.',
    labelNames: ['listener'] as const,
    registers: [registry],
    collect() {
      for (const [listener, n] of Object.entries(openConnections)) this.set({ listener }, n);
    },
  });
  const rejected = new Counter({
    name: `${METRIC_PREFIX}connections_rejected_total`,
    help: 'Connections the sidecar closed, by listener kind and reason (max_connections, pipelining, headers_timeout, request_timeout, idle_timeout, forward_loop).',
    labelNames: ['listener', 'reason'] as const,
    registers: [registry],
  });
  const connectionObserver: ConnectionObserver = {
    opened: (kind) => void (openConnections[kind] += 1),
    closed: (kind) => void (openConnections[kind] -= 1),
    rejected: (kind, reason) => rejected.labels(kind, reason).inc(),
  };

  const durationChildren = new Map<string, { observe(v: number): void }>();
  const durationChild = (route: string) => {
    let child = durationChildren.get(route);
    if (!child) durationChildren.set(route, (child = requestDuration.labels(route)));
    return child;
  };

  const tokenObserver: TokenProviderObserver = {
    cacheHit: (route) => hitTally.inc(route, routeLabel(route)),
    cacheMiss: (route) => cacheMisses.labels(routeLabel(route)).inc(),
    exchanged(route: string, seconds: number, error?: unknown) {
      exchanges.labels(routeLabel(route), exchangeResult(error), bindingLabel(route)).inc();
      exchangeDuration.labels(routeLabel(route)).observe(seconds);
    },
    invalidated: (route) => invalidations.labels(routeLabel(route)).inc(),
    invalidationRefused: (route) => invalidationsRefused.labels(routeLabel(route)).inc(),
    bindingMismatch: (route) => bindingMismatches.labels(routeLabel(route)).inc(),
  };
  const proxyObserver: ProxyObserver = {
    finished(route, outcome, seconds, detail) {
      const r = routeLabel(route);
      // A response the app never got whole is not a success (issue 10 item 18).
      const cls = outcome === 'aborted' ? 'aborted' : statusClass(outcome);
      // Both from closed sets (proxy/outcome.ts, proxy/h2/grpc.ts).
      const protocol = detail?.protocol ?? 'h1';
      const grpc = detail?.grpcStatus ?? 'none';
      const binding = bindingLabel(r);
      requestTally.inc(`${r} ${cls} ${protocol} ${grpc} ${binding}`, r, cls, protocol, grpc, binding);
      durationChild(r).observe(seconds);
    },
    retriedAfter401: (route) => retries.labels(routeLabel(route)).inc(),
  };
  const identityObserver: IdentityObserver = { rotated: () => rotations.inc(), reloadFailed: () => reloadErrors.inc() };
  const endpointObserver = createEndpointMetrics(registry, known);
  const knowRoutes = (names: readonly string[]) => names.forEach((n) => known.add(n));
  const setBinding = (route: string, binding: TokenBinding) => void bindings.set(route, binding);
  return { registry, tokenObserver, proxyObserver, identityObserver, forwardObserver, connectionObserver, endpointObserver, knowRoutes, setBinding };
}

/** Counts per label set, kept as plain numbers between scrapes. */
class Tally {
  readonly #counts = new Map<string, { labels: Record<string, string>; value: number }>();
  readonly #labelNames: readonly string[];

  constructor(...labelNames: string[]) {
    this.#labelNames = labelNames;
  }

  /** `key` must identify the label values uniquely; it is all the hot path hashes. */
  inc(key: string, ...values: string[]): void {
    const slot = this.#counts.get(key);
    if (slot) {
      slot.value += 1;
      return;
    }
    const labels: Record<string, string> = {};
    this.#labelNames.forEach((name, i) => (labels[name] = values[i] ?? ''));
    this.#counts.set(key, { labels, value: 1 });
  }

  publish(counter: Counter<string>): void {
    counter.reset();
    for (const { labels, value } of this.#counts.values()) counter.inc(labels, value);
  }
}

/**
 * TokenProvider: the only thing the proxy knows about tokens. This file is the facade; the
 * jobs live beside it, one per module:
 *
 * - entries.ts: keys (route parameters, subject-token digest, certificate thumbprint), LRU
 *   eviction, and which tokens the redactor knows.
 * - entry-refresh.ts with single-flight.ts: one exchange per key, detached from the request
 *   that started it, its outcome recorded on the entry.
 * - refresh-schedule.ts: refresh-ahead, and timers that are all bounded (issue 10 item 4).
 * - backoff.ts: exponential backoff with jitter after failures.
 * - token-status.ts: what /readyz, /status and the gauges may know of each token.
 *
 * On STS failure the current token is served until it really expires while retries back
 * off; after expiry requests fail closed with TokenUnavailableError, which carries the root
 * code and the STS's OAuth error. That holds across a subject-token rotation too: while the
 * new subject token's exchange fails, the route's previous token (same certificate) is
 * served until it expires. An upstream 401 drops a token at most once per route per window
 * (issue 10 item 5). The RFC 8705 binding check wraps the exchange (sts/certificate-binding.ts)
 * and the metric labels of its outcomes live in admin/exchange-result.ts.
 */
import { TokenUnavailableError } from '../errors.js';
import type { SubjectToken, SubjectTokenProvider } from '../credentials/subject-token.js';
import { createRedactor, type Redactor } from '../log/redact.js';
import type { DpopKey } from '../dpop/key.js';
import type { BindingObserver } from '../sts/certificate-binding.js';
import type { Exchange } from '../sts/client.js';
import type { IdentityGeneration } from '../tls/identity.js';
import type { CachedToken } from './cached-token.js';
import { EntryTable, type CarriedEntry, type Entry } from './entries.js';
import { createStatusReader, type RouteTokenStatus } from './token-status.js';
import { createEntryRefresh, type ExchangeObserver } from './entry-refresh.js';
import { NODE_TIMERS, RefreshSchedule, type Timers } from './refresh-schedule.js';
import type { ActorToken, RouteExchange } from './route-exchange.js';

export type { CachedToken } from './cached-token.js';
export type { ActorToken, RouteCredentials, RouteExchange } from './route-exchange.js';
export type { CarriedEntry } from './entries.js';
export type { RouteTokenStatus } from './token-status.js';
export { MAX_TIMER_DELAY_MS, type Timers } from './refresh-schedule.js';

/** What the provider needs of the workload identity. */
export interface IdentitySource {
  current(): IdentityGeneration;
  /** Returns a function that removes the listener. */
  onChange(listener: () => void): () => void;
}

/** What the provider needs of the DPoP key (RFC 9449), for routes with `binding: dpop`. */
export interface DpopKeys {
  current(): DpopKey;
  /** Returns a function that removes the listener. */
  onChange(listener: () => void): () => void;
}

export interface TokenProvider {
  /** A token that is valid now, from cache or from a (shared) exchange. Throws TokenUnavailableError. */
  getToken(route: string): Promise<CachedToken>;
  /**
   * The upstream rejected this token (401). True when the caller may retry with another
   * token: this one was dropped now, or was already replaced. False when the drop was
   * refused because the route already had a 401-triggered drop within the
   * `reexchangeAfter401IntervalMs` window (the token stays; no exchange).
   */
  invalidate(route: string, accessToken: string): boolean;
  status(now?: number): RouteTokenStatus[];
  /**
   * Exchange for every eager route that holds no token yet (a token carried over by a reload
   * is kept); resolves when each has succeeded or failed once.
   */
  warmUp(): Promise<void>;
  /**
   * Issue 13: a configuration reload hands the tokens of `routes` (whose exchange parameters
   * did not change) to the next generation's provider. Exchanges in flight for them finish
   * first, so none is lost; this provider then stops refreshing them (no exchange twice).
   */
  handOver(routes: ReadonlySet<string>): Promise<CarriedEntry[]>;
  /** Takes tokens handed over by the previous generation's provider (routes it does not know are skipped). */
  adopt(carried: readonly CarriedEntry[]): void;
  close(): void;
}


/**
 * Hooks for metrics and logs; the cache itself stays free of prom-client and pino. The
 * binding hook is called by the exchange decorator, wired with the same observer.
 */
export interface TokenProviderObserver extends ExchangeObserver, BindingObserver {
  cacheHit?(route: string): void;
  cacheMiss?(route: string): void;
  invalidated?(route: string): void;
  /** A 401-triggered drop refused: the route had one within the window. */
  invalidationRefused?(route: string): void;
}

export interface TokenProviderOptions {
  /** A route with `credentials` of its own (issue 13) uses them instead of the three below. */
  readonly routes: readonly RouteExchange[];
  readonly subjectTokens: SubjectTokenProvider;
  readonly actorToken?: ActorToken | undefined;
  /** The workload certificate, when configured: part of the key, passed to the exchange. */
  readonly identity?: IdentitySource | undefined;
  /** The DPoP key, when a route has `binding: dpop`: part of that route's key, proved to the STS. */
  readonly dpopKeys?: DpopKeys | undefined;
  readonly exchange: Exchange;
  readonly refreshBeforeExpiryRatio: number;
  readonly expirySkewMs: number;
  readonly retryInitialDelayMs: number;
  readonly retryMaxDelayMs: number;
  readonly maxEntries: number;
  /** At most one 401-triggered drop (and so exchange) per route in this window; default 0 (no bound). */
  readonly reexchangeAfter401IntervalMs?: number;
  /** The sidecar's redactor: issued tokens are registered while cached (issue 10 item 23). */
  readonly redactor?: Redactor;
  readonly observer?: TokenProviderObserver;
  readonly now?: () => number;
  readonly random?: () => number;
  /** Where refresh and retry timers are armed (tests pass a fake clock's). */
  readonly timers?: Timers;
}

export function createTokenProvider(options: TokenProviderOptions): TokenProvider {
  const now = options.now ?? Date.now;
  const observer = options.observer ?? {};
  const reexchangeAfter401IntervalMs = options.reexchangeAfter401IntervalMs ?? 0;
  /** Per route: when a 401 last dropped its token. */
  const last401Drop = new Map<string, number>();
  const currentIdentity = options.identity ? () => options.identity!.current() : () => undefined;
  const dpopKeys = options.dpopKeys;
  const currentDpopKey = (route: RouteExchange): DpopKey | undefined => (route.dpop && dpopKeys ? dpopKeys.current() : undefined);
  const schedule = new RefreshSchedule<Entry>(now, options.timers ?? NODE_TIMERS);
  const table = new EntryTable({
    routes: options.routes,
    maxEntries: options.maxEntries,
    redactor: options.redactor ?? createRedactor(),
    dropped: (entry) => schedule.cancel(entry),
  });
  const refresh = createEntryRefresh({
    table,
    schedule,
    exchange: options.exchange,
    subjectTokens: options.subjectTokens,
    actorToken: options.actorToken,
    identity: currentIdentity,
    dpopKey: currentDpopKey,
    refresh: { refreshBeforeExpiryRatio: options.refreshBeforeExpiryRatio, expirySkewMs: options.expirySkewMs },
    backoff: { initialDelayMs: options.retryInitialDelayMs, maxDelayMs: options.retryMaxDelayMs },
    observer,
    now,
    random: options.random ?? Math.random,
  });
  let closed = false;

  async function getToken(routeName: string): Promise<CachedToken> {
    const route = table.route(routeName);
    if (!route) throw new TokenUnavailableError(routeName, new Error('unknown route'));
    const t = now();
    let entry: Entry;
    let subject: SubjectToken;
    try {
      subject = refresh.credentials(route).subjectTokens.current();
      entry = table.lookup(route, subject, currentIdentity(), currentDpopKey(route));
    } catch (err) {
      throw new TokenUnavailableError(routeName, err);
    }
    entry.lastUsed = t;
    const token = entry.token;
    if (token && t < entry.usableUntil) {
      observer.cacheHit?.(routeName);
      if (t >= entry.refreshAt && !entry.inflight && t >= entry.nextAttemptAt) {
        // The timer should have done this; a request noticing first refreshes in the background.
        void refresh.exchange(entry, subject).catch(() => {});
      }
      return token;
    }
    observer.cacheMiss?.(routeName);
    if (!entry.inflight && entry.lastError !== undefined && t < entry.nextAttemptAt) {
      // Backing off after a failure: the previous token if it is still valid, else fail closed, fast.
      const previous = servePrevious(entry, t);
      if (previous) return previous;
      throw new TokenUnavailableError(routeName, entry.lastError);
    }
    try {
      return await refresh.exchange(entry, subject);
    } catch (err) {
      const previous = servePrevious(entry, now());
      if (previous) return previous;
      throw new TokenUnavailableError(routeName, err);
    }
  }

  /**
   * Issue 10 item 13: the subject token rotated (new key) and its exchange fails. The
   * route's token from before the rotation is still valid: serve it until it expires, as
   * any token is served through an STS outage.
   */
  function servePrevious(entry: Entry, t: number): CachedToken | undefined {
    const previous = table.previous(entry, t);
    if (!previous) return undefined;
    previous.lastUsed = t;
    return previous.token;
  }

  function invalidate(routeName: string, accessToken: string): boolean {
    const holders = table.holding(routeName, accessToken);
    // Already replaced (or dropped by an earlier 401): the caller's next getToken finds another.
    if (holders.length === 0) return true;
    const t = now();
    const lastDrop = last401Drop.get(routeName);
    if (lastDrop !== undefined && t - lastDrop < reexchangeAfter401IntervalMs) {
      // A 401 storm (a path that always answers 401) must not become an exchange storm.
      observer.invalidationRefused?.(routeName);
      return false;
    }
    last401Drop.set(routeName, t);
    for (const entry of holders) table.discard(entry);
    observer.invalidated?.(routeName);
    return true;
  }

  const status = createStatusReader(options.routes, table, now);

  async function warmUp(): Promise<void> {
    const t = now();
    const needed = options.routes.filter((r) => {
      if (r.lazy) return false;
      const best = table.latest(r);
      return !(best?.token && t < best.refreshAt);
    });
    await Promise.all(needed.map((r) => refresh.refreshRoute(r).catch(() => undefined)));
  }

  async function handOver(routes: ReadonlySet<string>): Promise<CarriedEntry[]> {
    const entries = [...table.values()].filter((e) => routes.has(e.route.name));
    await Promise.all(entries.map((e) => e.inflight?.catch(() => undefined)));
    const t = now();
    const carried: CarriedEntry[] = [];
    for (const e of entries) {
      if (!table.holds(e) || !e.token || t >= e.usableUntil) continue;
      schedule.cancel(e);
      const { subjectDigest, identity, dpopKey, token, usableUntil, refreshAt, lastUsed } = e;
      carried.push({ route: e.route.name, subjectDigest, identity, dpopKey, token, usableUntil, refreshAt, lastUsed });
    }
    return carried;
  }

  function adopt(carried: readonly CarriedEntry[]): void {
    const t = now();
    for (const c of carried) {
      const route = table.route(c.route);
      if (route && t < c.usableUntil) refresh.rearm(table.adopt(c, route));
    }
  }

  // A rotated subject token or certificate: exchange ahead for routes in use, so the first
  // request after the rotation finds the new key's exchange already under way. A subject
  // token refreshes only the routes exchanging it (issue 13); the certificate, every route;
  // a DPoP key (issue 16), the routes bound to it.
  const refreshActiveRoutes = (using: (route: RouteExchange) => boolean) => () => {
    if (closed) return;
    const active = new Set<RouteExchange>();
    for (const e of table.values()) if (!e.route.lazy || e.lastUsed > 0) active.add(e.route);
    for (const r of options.routes) if (!r.lazy) active.add(r);
    for (const r of active) if (using(r)) void refresh.refreshRoute(r).catch(() => {});
  };
  const subjectSources = new Set([options.subjectTokens, ...options.routes.map((r) => refresh.credentials(r).subjectTokens)]);
  for (const source of subjectSources) source.onChange(refreshActiveRoutes((r) => refresh.credentials(r).subjectTokens === source));
  // The identity and the DPoP key may outlive this provider (a reload keeps them): stop listening at close.
  const stopWatchingIdentity = options.identity?.onChange(refreshActiveRoutes(() => true));
  const stopWatchingDpopKey = dpopKeys?.onChange(refreshActiveRoutes((r) => r.dpop !== undefined));

  return {
    getToken,
    invalidate,
    status,
    warmUp,
    handOver,
    adopt,
    close() {
      closed = true;
      stopWatchingIdentity?.();
      stopWatchingDpopKey?.();
      schedule.close();
      table.forgetAll();
    },
  };
}

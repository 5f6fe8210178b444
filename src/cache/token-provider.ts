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
 *
 * On STS failure the current token is served until it really expires while retries back
 * off; after expiry requests fail closed with TokenUnavailableError, which carries the root
 * code and the STS's OAuth error. That holds across a subject-token rotation too: while the
 * new subject token's exchange fails, the route's previous token (same certificate) is
 * served until it expires. An upstream 401 drops a token at most once per route per window
 * (issue 10 item 5). The RFC 8705 binding check wraps the exchange (sts/certificate-binding.ts)
 * and the metric labels of its outcomes live in admin/exchange-result.ts.
 */
import { SidecarError, TokenUnavailableError } from '../errors.js';
import type { SubjectToken, SubjectTokenProvider } from '../credentials/subject-token.js';
import { createRedactor, type Redactor } from '../log/redact.js';
import type { DpopKey } from '../dpop/key.js';
import type { BindingObserver } from '../sts/certificate-binding.js';
import type { Exchange } from '../sts/client.js';
import type { IdentityGeneration } from '../tls/identity.js';
import type { CachedToken } from './cached-token.js';
import { EntryTable, type Entry } from './entries.js';
import { createEntryRefresh, type ExchangeObserver } from './entry-refresh.js';
import { NODE_TIMERS, RefreshSchedule, type Timers } from './refresh-schedule.js';
import type { RouteExchange } from './route-exchange.js';

export type { CachedToken } from './cached-token.js';
export type { RouteExchange } from './route-exchange.js';
export { MAX_TIMER_DELAY_MS, type Timers } from './refresh-schedule.js';

/** What the provider needs of the workload identity. */
export interface IdentitySource {
  current(): IdentityGeneration;
  onChange(listener: () => void): void;
}

/** What the provider needs of the DPoP key (RFC 9449), for routes with `binding: dpop`. */
export interface DpopKeys {
  current(): DpopKey;
  onChange(listener: () => void): void;
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
  /** Exchange for every eager route; resolves when each has succeeded or failed once. */
  warmUp(): Promise<void>;
  close(): void;
}

export interface RouteTokenStatus {
  readonly route: string;
  readonly lazy: boolean;
  readonly valid: boolean;
  readonly expiresInSeconds: number | undefined;
  readonly refreshing: boolean;
  readonly consecutiveFailures: number;
  readonly lastErrorCode: string | undefined;
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
  readonly routes: readonly RouteExchange[];
  readonly subjectTokens: SubjectTokenProvider;
  readonly actorToken?: { current(): string; readonly type: string } | undefined;
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
      subject = options.subjectTokens.current();
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

  function status(t = now()): RouteTokenStatus[] {
    return options.routes.map((route) => {
      const best = table.latest(route);
      const lastError = best?.lastError;
      return {
        route: route.name,
        lazy: route.lazy,
        valid: best?.token !== undefined && t < best.usableUntil,
        expiresInSeconds: best?.token ? Math.max(0, (best.token.expiresAt - t) / 1000) : undefined,
        refreshing: best?.inflight !== undefined,
        consecutiveFailures: best?.consecutiveFailures ?? 0,
        lastErrorCode: lastError instanceof SidecarError ? lastError.code : lastError ? 'ERR_UNKNOWN' : undefined,
      };
    });
  }

  async function warmUp(): Promise<void> {
    await Promise.all(options.routes.filter((r) => !r.lazy).map((r) => refresh.refreshRoute(r).catch(() => undefined)));
  }

  // A rotated subject token or certificate: exchange ahead for routes in use, so the first
  // request after the rotation finds the new key's exchange already under way.
  const refreshActiveRoutes = (which: (r: RouteExchange) => boolean = () => true) => {
    if (closed) return;
    const active = new Set<RouteExchange>();
    for (const e of table.values()) if (!e.route.lazy || e.lastUsed > 0) active.add(e.route);
    for (const r of options.routes) if (!r.lazy) active.add(r);
    for (const r of active) if (which(r)) void refresh.refreshRoute(r).catch(() => {});
  };
  options.subjectTokens.onChange(() => refreshActiveRoutes());
  options.identity?.onChange(() => refreshActiveRoutes());
  // A new DPoP key (issue 16): only the routes bound to it exchange again.
  dpopKeys?.onChange(() => refreshActiveRoutes((r) => r.dpop !== undefined));

  return {
    getToken,
    invalidate,
    status,
    warmUp,
    close() {
      closed = true;
      schedule.close();
      table.forgetAll();
    },
  };
}

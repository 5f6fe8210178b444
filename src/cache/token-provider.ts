/**
 * TokenProvider: the only thing the proxy knows about tokens.
 *
 * - Keyed by everything that changes the token: the route's exchange parameters, a
 *   digest of the subject token and the thumbprint of the workload certificate the STS
 *   saw (RFC 8705: a token bound to one certificate is useless with another).
 * - A JWT whose `cnf.x5t#S256` names another certificate is never cached or served.
 * - Refresh-ahead: a token is refreshed when `refreshBeforeExpiryRatio` of its lifetime
 *   is left, by a timer, so at steady state no request waits for the STS.
 * - Single flight: one exchange per key, detached from the request that started it,
 *   so a client that disconnects never aborts the exchange others wait on.
 * - On STS failure the current token is served until it really expires while retries
 *   back off exponentially with jitter; after expiry requests fail closed.
 */
import { SidecarError, StsError, TokenUnavailableError } from '../errors.js';
import { assertUsable, type SubjectToken, type SubjectTokenProvider } from '../credentials/subject-token.js';
import { forgetSecret, registerSecret } from '../log/redact.js';
import type { ExchangeParams } from '../sts/exchange-request.js';
import type { IssuedToken } from '../sts/exchange-response.js';
import { checkCertificateBinding } from '../tls/binding.js';
import type { IdentityGeneration } from '../tls/identity.js';

/**
 * A cached token and the identity generation it was obtained with: the proxy must send it
 * on a connection presenting that generation's certificate.
 */
export interface CachedToken extends IssuedToken {
  readonly identity: IdentityGeneration | undefined;
}

/** What the provider needs of the workload identity. */
export interface IdentitySource {
  current(): IdentityGeneration;
  onChange(listener: () => void): void;
}

/** Route-level exchange settings; the subject and actor tokens are added per exchange. */
export interface RouteExchange {
  readonly name: string;
  readonly lazy: boolean;
  readonly params: Omit<ExchangeParams, 'subjectToken' | 'subjectTokenType' | 'actorToken' | 'actorTokenType'>;
}

export interface TokenProvider {
  /** A token that is valid now, from cache or from a (shared) exchange. Throws TokenUnavailableError. */
  getToken(route: string): Promise<CachedToken>;
  /**
   * The upstream rejected this token (401). True when a retry may use a different token (it was
   * dropped, or already replaced); false when the per-route window
   * (`limits.reexchangeAfter401IntervalSeconds`) refused another drop and exchange (issue 10 item 5).
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

export type ExchangeResult =
  | 'success'
  | 'oauth_error'
  | 'invalid_response'
  | 'timeout'
  | 'unreachable'
  | 'server_error'
  | 'subject_token_error'
  | 'binding_mismatch'
  | 'error';

/** Hooks for metrics and logs; the cache itself stays free of prom-client and pino. */
export interface TokenProviderObserver {
  cacheHit?(route: string): void;
  cacheMiss?(route: string): void;
  exchanged?(route: string, result: ExchangeResult, seconds: number, error?: unknown): void;
  invalidated?(route: string): void;
  /** The STS issued a token bound to another certificate; it was discarded. */
  bindingMismatch?(route: string): void;
}

export interface TokenProviderOptions {
  readonly routes: readonly RouteExchange[];
  readonly subjectTokens: SubjectTokenProvider;
  readonly actorToken?: { current(): string; readonly type: string } | undefined;
  /** The workload certificate, when configured: part of the key, passed to the exchange. */
  readonly identity?: IdentitySource | undefined;
  readonly exchange: (params: ExchangeParams, identity: IdentityGeneration | undefined) => Promise<IssuedToken>;
  readonly refreshBeforeExpiryRatio: number;
  readonly expirySkewMs: number;
  readonly retryInitialDelayMs: number;
  readonly retryMaxDelayMs: number;
  readonly maxEntries: number;
  /** At most one drop-and-exchange after a 401 per route in this window (0: no limit). */
  readonly reexchangeAfter401IntervalMs?: number;
  readonly observer?: TokenProviderObserver;
  readonly now?: () => number;
  readonly random?: () => number;
}

interface Entry {
  readonly key: string;
  readonly route: RouteExchange;
  readonly identity: IdentityGeneration | undefined;
  token: CachedToken | undefined;
  usableUntil: number;
  refreshAt: number;
  inflight: Promise<CachedToken> | undefined;
  consecutiveFailures: number;
  nextAttemptAt: number;
  lastError: unknown;
  lastUsed: number;
  timer: NodeJS.Timeout | undefined;
}

export function createTokenProvider(options: TokenProviderOptions): TokenProvider {
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const observer = options.observer ?? {};
  // Per route: the fixed part of its cache key, and the entry the last lookup found for
  // the last subject-token object, so the steady state skips building and hashing the key.
  interface RouteSlot {
    readonly route: RouteExchange;
    readonly keyPrefix: string;
    lastSubject: SubjectToken | undefined;
    lastIdentity: IdentityGeneration | undefined;
    lastEntry: Entry | undefined;
  }
  const slots = new Map<string, RouteSlot>(
    options.routes.map((r) => [
      r.name,
      { route: r, keyPrefix: JSON.stringify([r.name, r.params]), lastSubject: undefined, lastIdentity: undefined, lastEntry: undefined },
    ]),
  );
  const currentIdentity = options.identity ? () => options.identity!.current() : () => undefined;
  const entries = new Map<string, Entry>();
  let closed = false;

  const keyFor = (route: RouteExchange, subject: SubjectToken, identity: IdentityGeneration | undefined) =>
    `${slots.get(route.name)!.keyPrefix}|${subject.digest}|${identity?.thumbprint ?? ''}`;

  function entryFor(route: RouteExchange, subject: SubjectToken, identity: IdentityGeneration | undefined): Entry {
    const key = keyFor(route, subject, identity);
    let entry = entries.get(key);
    if (!entry) {
      entry = {
        key,
        route,
        identity,
        token: undefined,
        usableUntil: 0,
        refreshAt: 0,
        inflight: undefined,
        consecutiveFailures: 0,
        nextAttemptAt: 0,
        lastError: undefined,
        lastUsed: 0,
        timer: undefined,
      };
      entries.set(key, entry);
      if (entries.size > options.maxEntries) evictLeastRecentlyUsed(entry);
    }
    return entry;
  }

  function evictLeastRecentlyUsed(keep: Entry): void {
    let oldest: Entry | undefined;
    for (const e of entries.values()) {
      if (e !== keep && !e.inflight && (!oldest || e.lastUsed < oldest.lastUsed)) oldest = e;
    }
    if (oldest) drop(oldest);
  }

  function drop(entry: Entry): void {
    clearTimeout(entry.timer);
    const slot = slots.get(entry.route.name);
    if (slot?.lastEntry === entry) slot.lastEntry = undefined;
    if (entry.token) forgetSecret(entry.token.accessToken);
    entries.delete(entry.key);
  }

  function schedule(entry: Entry, at: number): void {
    clearTimeout(entry.timer);
    if (closed) return;
    entry.timer = setTimeout(() => onTimer(entry), Math.max(0, at - now()));
    entry.timer.unref();
  }

  /** Timer: refresh ahead or retry, as long as someone still wants this route's token. */
  function onTimer(entry: Entry): void {
    entry.timer = undefined;
    if (entries.get(entry.key) !== entry) return;
    const t = now();
    const wanted = !entry.route.lazy || entry.lastUsed > (entry.token?.issuedAt ?? 0) - 1;
    if (!wanted) {
      // Idle lazy route: let the token lapse and forget it once it is unusable.
      if (entry.token && t < entry.usableUntil) schedule(entry, entry.usableUntil);
      else drop(entry);
      return;
    }
    // Exchange for the *current* subject token: after a rotation the key moves on.
    void refreshRoute(entry.route).catch(() => {});
  }

  function exchangeFor(entry: Entry, subject: SubjectToken): Promise<CachedToken> {
    if (entry.inflight) return entry.inflight;
    const started = now();
    const exchangeOnce = (): Promise<IssuedToken> => {
      const actor = options.actorToken;
      return options.exchange(
        {
          ...entry.route.params,
          subjectToken: subject.value,
          subjectTokenType: subject.type,
          ...(actor ? { actorToken: actor.current(), actorTokenType: actor.type } : {}),
        },
        entry.identity,
      );
    };
    const run = async (): Promise<CachedToken> => {
      assertUsable(subject, options.subjectTokens.description, started);
      const identity = entry.identity;
      // RFC 8705 3.1: a token bound to another certificate would be refused upstream (or,
      // worse, accepted by a lax one). Discard it, ask once more, then fail closed.
      for (let attempt = 1; ; attempt++) {
        const token = await exchangeOnce();
        if (!identity || checkCertificateBinding(token.accessToken, identity.thumbprint) !== 'mismatch') return { ...token, identity };
        observer.bindingMismatch?.(entry.route.name);
        if (attempt === 2) {
          throw new StsError(
            'ERR_STS_TOKEN_BINDING_MISMATCH',
            `the STS issued a token bound to another certificate than the workload's (x5t#S256 ${identity.thumbprint}); it was discarded`,
          );
        }
      }
    };
    const inflight = run().then(
      (token) => {
        onSuccess(entry, token);
        observer.exchanged?.(entry.route.name, 'success', (now() - started) / 1000);
        return token;
      },
      (err: unknown) => {
        onFailure(entry, err);
        observer.exchanged?.(entry.route.name, classify(err), (now() - started) / 1000, err);
        throw err;
      },
    );
    entry.inflight = inflight;
    // Clear in a separate step so awaiting callers see the settled entry state first.
    void inflight.then(
      () => (entry.inflight = undefined),
      () => (entry.inflight = undefined),
    );
    return inflight;
  }

  function onSuccess(entry: Entry, token: CachedToken): void {
    if (entry.token) forgetSecret(entry.token.accessToken);
    registerSecret(token.accessToken);
    const lifetime = Math.max(0, token.expiresAt - token.issuedAt);
    entry.token = token;
    entry.usableUntil = token.expiresAt - Math.min(options.expirySkewMs, lifetime * 0.05);
    entry.refreshAt = token.expiresAt - lifetime * options.refreshBeforeExpiryRatio;
    entry.consecutiveFailures = 0;
    entry.lastError = undefined;
    entry.nextAttemptAt = 0;
    if (entries.get(entry.key) !== entry) entries.set(entry.key, entry);
    // The route has moved to this key (subject or certificate rotated): older keys are obsolete.
    for (const other of entries.values()) {
      if (other !== entry && other.route === entry.route && !other.inflight) drop(other);
    }
    schedule(entry, entry.refreshAt);
  }

  function onFailure(entry: Entry, err: unknown): void {
    entry.consecutiveFailures += 1;
    entry.lastError = err;
    // Exponential backoff with "equal jitter": half fixed, half random, so many sidecars
    // restarted together do not hammer a recovering STS in lockstep.
    const ceiling = Math.min(
      options.retryMaxDelayMs,
      options.retryInitialDelayMs * 2 ** Math.min(entry.consecutiveFailures - 1, 30),
    );
    const delay = ceiling / 2 + random() * (ceiling / 2);
    entry.nextAttemptAt = now() + delay;
    const stillValid = entry.token !== undefined && now() < entry.usableUntil;
    if (stillValid || !entry.route.lazy) schedule(entry, entry.nextAttemptAt);
  }

  async function refreshRoute(route: RouteExchange): Promise<CachedToken> {
    const subject = options.subjectTokens.current();
    const entry = entryFor(route, subject, currentIdentity());
    return exchangeFor(entry, subject);
  }

  async function getToken(routeName: string): Promise<CachedToken> {
    const slot = slots.get(routeName);
    if (!slot) throw new TokenUnavailableError(routeName, new Error('unknown route'));
    const route = slot.route;
    const t = now();
    let entry: Entry;
    let subject: SubjectToken;
    try {
      subject = options.subjectTokens.current();
      const identity = currentIdentity();
      if (subject === slot.lastSubject && identity === slot.lastIdentity && slot.lastEntry) {
        entry = slot.lastEntry;
      } else {
        entry = entryFor(route, subject, identity);
        slot.lastSubject = subject;
        slot.lastIdentity = identity;
        slot.lastEntry = entry;
      }
    } catch (err) {
      throw new TokenUnavailableError(routeName, err);
    }
    entry.lastUsed = t;
    const token = entry.token;
    if (token && t < entry.usableUntil) {
      observer.cacheHit?.(routeName);
      if (t >= entry.refreshAt && !entry.inflight && t >= entry.nextAttemptAt) {
        // The timer should have done this; a request noticing first refreshes in the background.
        void exchangeFor(entry, subject).catch(() => {});
      }
      return token;
    }
    observer.cacheMiss?.(routeName);
    if (!entry.inflight && entry.lastError !== undefined && t < entry.nextAttemptAt) {
      // Backing off after a failure and nothing valid to serve: fail closed, fast.
      throw new TokenUnavailableError(routeName, entry.lastError);
    }
    try {
      return await exchangeFor(entry, subject);
    } catch (err) {
      throw new TokenUnavailableError(routeName, err);
    }
  }

  // Stand-in for H2's implementation of the issue 10 item 5 window (the lead reconciles).
  const lastInvalidation = new Map<string, number>();
  function invalidate(routeName: string, accessToken: string): boolean {
    const held = [...entries.values()].filter((e) => e.route.name === routeName && e.token?.accessToken === accessToken);
    if (held.length === 0) return true; // already replaced: a retry gets another token
    const last = lastInvalidation.get(routeName);
    if (last !== undefined && now() - last < (options.reexchangeAfter401IntervalMs ?? 0)) return false;
    lastInvalidation.set(routeName, now());
    for (const entry of held) {
      forgetSecret(accessToken);
      entry.token = undefined;
      entry.usableUntil = 0;
      entry.refreshAt = 0;
      observer.invalidated?.(routeName);
    }
    return true;
  }

  function status(t = now()): RouteTokenStatus[] {
    return options.routes.map((route) => {
      let best: Entry | undefined;
      for (const e of entries.values()) {
        if (e.route === route && (!best || (e.token?.expiresAt ?? 0) > (best.token?.expiresAt ?? 0))) best = e;
      }
      const valid = best?.token !== undefined && t < best.usableUntil;
      return {
        route: route.name,
        lazy: route.lazy,
        valid,
        expiresInSeconds: best?.token ? Math.max(0, (best.token.expiresAt - t) / 1000) : undefined,
        refreshing: best?.inflight !== undefined,
        consecutiveFailures: best?.consecutiveFailures ?? 0,
        lastErrorCode: best?.lastError instanceof SidecarError ? best.lastError.code : best?.lastError ? 'ERR_UNKNOWN' : undefined,
      };
    });
  }

  async function warmUp(): Promise<void> {
    await Promise.all(
      options.routes.filter((r) => !r.lazy).map((r) => refreshRoute(r).catch(() => undefined)),
    );
  }

  // A rotated subject token or certificate: exchange ahead for routes in use, so the first
  // request after the rotation finds the new key's exchange already under way.
  const refreshActiveRoutes = () => {
    if (closed) return;
    const active = new Set<RouteExchange>();
    for (const e of entries.values()) if (!e.route.lazy || e.lastUsed > 0) active.add(e.route);
    for (const r of options.routes) if (!r.lazy) active.add(r);
    for (const r of active) void refreshRoute(r).catch(() => {});
  };
  options.subjectTokens.onChange(refreshActiveRoutes);
  options.identity?.onChange(refreshActiveRoutes);

  return {
    getToken,
    invalidate,
    status,
    warmUp,
    close() {
      closed = true;
      for (const e of entries.values()) clearTimeout(e.timer);
    },
  };
}

function classify(err: unknown): ExchangeResult {
  if (!(err instanceof SidecarError)) return 'error';
  switch (err.code) {
    case 'ERR_STS_OAUTH_ERROR':
      return 'oauth_error';
    case 'ERR_STS_RESPONSE_INVALID':
    case 'ERR_STS_RESPONSE_TOO_LARGE':
      return 'invalid_response';
    case 'ERR_STS_TIMEOUT':
      return 'timeout';
    case 'ERR_STS_UNREACHABLE':
      return 'unreachable';
    case 'ERR_STS_SERVER_ERROR':
      return 'server_error';
    case 'ERR_SUBJECT_TOKEN_EXPIRED':
    case 'ERR_SUBJECT_TOKEN_UNAVAILABLE':
      return 'subject_token_error';
    case 'ERR_STS_TOKEN_BINDING_MISMATCH':
      return 'binding_mismatch';
    default:
      return 'error';
  }
}

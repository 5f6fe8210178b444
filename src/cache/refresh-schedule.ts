/**
 * When a cached token is refreshed, and the timers that do it. Refresh-ahead: a token is
 * refreshed when `refreshBeforeExpiryRatio` of its lifetime is left, so at steady state no
 * request waits for the STS. Every delay is bounded (issue 10 item 4): Node turns a delay
 * past 2^31-1 ms into 1 ms, which would refresh a long-lived token in a loop.
 */
import { MAX_TOKEN_LIFETIME_MS } from '../sts/exchange-response.js';
import type { CachedToken } from './cached-token.js';

/** The part of Node's timer API the cache uses, injectable so tests run on a fake clock. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Node's largest timer delay; a longer one fires after 1 ms (issue 10 item 4). */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** Node's timers, unref'd: a pending refresh must not keep the process alive. */
export const NODE_TIMERS: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface RefreshPolicy {
  /** Refresh when this fraction of the lifetime is left. */
  readonly refreshBeforeExpiryRatio: number;
  /** Stop serving a token this long before it expires (at most 5% of its lifetime). */
  readonly expirySkewMs: number;
}

/** A token's lifetime as the cache plans it. */
export interface RefreshPlan {
  /** The token, its lifetime clamped. */
  readonly token: CachedToken;
  /** Served until then; after that a request waits for an exchange (or fails closed). */
  readonly usableUntil: number;
  /** The refresh-ahead timer fires then. */
  readonly refreshAt: number;
}

export function refreshPlan(issued: CachedToken, policy: RefreshPolicy): RefreshPlan {
  const token = clampLifetime(issued);
  const lifetime = Math.max(0, token.expiresAt - token.issuedAt);
  return {
    token,
    usableUntil: token.expiresAt - Math.min(policy.expirySkewMs, lifetime * 0.05),
    refreshAt: token.expiresAt - lifetime * policy.refreshBeforeExpiryRatio,
  };
}

/** The token with its lifetime clamped (issue 10 item 4): the exchange may be any function. */
function clampLifetime(token: CachedToken): CachedToken {
  const latest = token.issuedAt + MAX_TOKEN_LIFETIME_MS;
  return token.expiresAt > latest || Number.isNaN(token.expiresAt) ? { ...token, expiresAt: latest } : token;
}

/**
 * One timer per owner (a cache entry), armed for an absolute time. A delay past Node's limit
 * is armed at the limit and, when that fires early, armed again for what is left.
 */
export class RefreshSchedule<Owner> {
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #handles = new Map<Owner, unknown>();
  #closed = false;

  constructor(now: () => number, timers: Timers) {
    this.#now = now;
    this.#timers = timers;
  }

  /** Calls `due` at `at` (replacing the owner's previous timer); nothing once closed. */
  at(owner: Owner, at: number, due: () => void): void {
    this.cancel(owner);
    if (this.#closed) return;
    const delay = Math.min(Math.max(0, at - this.#now()), MAX_TIMER_DELAY_MS);
    const handle = this.#timers.setTimeout(() => {
      this.#handles.delete(owner);
      if (this.#now() < at) this.at(owner, at, due);
      else due();
    }, delay);
    this.#handles.set(owner, handle);
  }

  cancel(owner: Owner): void {
    if (!this.#handles.has(owner)) return;
    this.#timers.clearTimeout(this.#handles.get(owner));
    this.#handles.delete(owner);
  }

  /** Stops every timer; none is armed afterwards. */
  close(): void {
    this.#closed = true;
    for (const handle of this.#handles.values()) this.#timers.clearTimeout(handle);
    this.#handles.clear();
  }
}

/**
 * The cache's entries: one per key, LRU-evicted past `maxEntries`, and the bookkeeping of
 * which issued tokens the redactor must know (a token is registered while cached, issue 10
 * item 23).
 *
 * A key is everything that changes the token: the route's exchange parameters and STS
 * profile (issue 13: two profiles are two issuers), a digest of the subject token, the
 * thumbprint of the workload certificate the STS saw (RFC 8705: a token bound to one
 * certificate is useless with another), and for a `binding: dpop` route the DPoP key's
 * thumbprint (RFC 9449: likewise for a key).
 */
import { DEFAULT_STS_PROFILE } from '../config/cross-references.js';
import type { SubjectToken } from '../credentials/subject-token.js';
import type { DpopKey } from '../dpop/key.js';
import type { Redactor } from '../log/redact.js';
import type { IdentityGeneration } from '../tls/identity.js';
import type { CachedToken } from './cached-token.js';
import type { RefreshPlan } from './refresh-schedule.js';
import type { RouteExchange } from './route-exchange.js';

/** What a configuration reload hands from one generation's cache to the next. */
export interface CarriedEntry {
  readonly route: string;
  readonly subjectDigest: string;
  readonly identity: IdentityGeneration | undefined;
  readonly dpopKey: DpopKey | undefined;
  readonly token: CachedToken;
  readonly usableUntil: number;
  readonly refreshAt: number;
  readonly lastUsed: number;
}

export interface Entry {
  readonly key: string;
  /** The subject token's digest in the key (what a carried entry is found again by). */
  readonly subjectDigest: string;
  readonly route: RouteExchange;
  readonly identity: IdentityGeneration | undefined;
  /** The DPoP key the exchange proves (binding: dpop routes only). */
  readonly dpopKey: DpopKey | undefined;
  /** Set through EntryTable.store and .discard only, so the redactor stays in step. */
  token: CachedToken | undefined;
  usableUntil: number;
  refreshAt: number;
  inflight: Promise<CachedToken> | undefined;
  consecutiveFailures: number;
  nextAttemptAt: number;
  /** The last exchange's failure, until one succeeds. */
  lastError: unknown;
  lastUsed: number;
}

/**
 * Per route: the fixed part of its key, and the entry the last lookup found for the last
 * subject-token object, so the steady state skips building and hashing the key.
 */
interface RouteSlot {
  readonly route: RouteExchange;
  readonly keyPrefix: string;
  lastSubject: SubjectToken | undefined;
  lastIdentity: IdentityGeneration | undefined;
  lastDpopKey: DpopKey | undefined;
  lastEntry: Entry | undefined;
}

export interface EntryTableOptions {
  readonly routes: readonly RouteExchange[];
  readonly maxEntries: number;
  readonly redactor: Redactor;
  /** An entry left the table (evicted, obsolete, idle): its timer must stop. */
  readonly dropped: (entry: Entry) => void;
}

export class EntryTable {
  readonly #entries = new Map<string, Entry>();
  readonly #slots: Map<string, RouteSlot>;
  readonly #options: EntryTableOptions;

  constructor(options: EntryTableOptions) {
    this.#options = options;
    this.#slots = new Map(
      options.routes.map((r) => [
        r.name,
        { route: r, keyPrefix: keyPrefix(r), lastSubject: undefined, lastIdentity: undefined, lastDpopKey: undefined, lastEntry: undefined },
      ]),
    );
  }

  route(name: string): RouteExchange | undefined {
    return this.#slots.get(name)?.route;
  }

  /** The entry for a route's current subject token and identity; the same objects as last time skip the key. */
  lookup(route: RouteExchange, subject: SubjectToken, identity: IdentityGeneration | undefined, dpopKey?: DpopKey): Entry {
    const slot = this.#slots.get(route.name)!;
    if (subject === slot.lastSubject && identity === slot.lastIdentity && dpopKey === slot.lastDpopKey && slot.lastEntry) return slot.lastEntry;
    const entry = this.entryFor(route, subject, identity, dpopKey);
    slot.lastSubject = subject;
    slot.lastIdentity = identity;
    slot.lastDpopKey = dpopKey;
    slot.lastEntry = entry;
    return entry;
  }

  /** The entry for this key, created (evicting the least recently used) when missing. */
  entryFor(route: RouteExchange, subject: SubjectToken | string, identity: IdentityGeneration | undefined, dpopKey?: DpopKey): Entry {
    const digest = typeof subject === 'string' ? subject : subject.digest;
    const jkt = dpopKey ? `|jkt:${dpopKey.thumbprint}` : '';
    const key = `${this.#slots.get(route.name)!.keyPrefix}|${digest}|${identity?.thumbprint ?? ''}${jkt}`;
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = {
        key,
        subjectDigest: digest,
        route,
        identity,
        dpopKey,
        token: undefined,
        usableUntil: 0,
        refreshAt: 0,
        inflight: undefined,
        consecutiveFailures: 0,
        nextAttemptAt: 0,
        lastError: undefined,
        lastUsed: 0,
      };
      this.#entries.set(key, entry);
      if (this.#entries.size > this.#options.maxEntries) this.#evictLeastRecentlyUsed(entry);
    }
    return entry;
  }

  /**
   * A token carried over from the previous configuration generation (issue 13): the same key,
   * because the route's exchange parameters, subject token and certificate did not change.
   */
  adopt(carried: CarriedEntry, route: RouteExchange): Entry {
    const entry = this.entryFor(route, carried.subjectDigest, carried.identity, carried.dpopKey);
    this.#options.redactor.register(carried.token.accessToken);
    if (entry.token) this.#options.redactor.forget(entry.token.accessToken);
    entry.token = carried.token;
    entry.usableUntil = carried.usableUntil;
    entry.refreshAt = carried.refreshAt;
    entry.lastUsed = carried.lastUsed;
    return entry;
  }

  /** Still in the table (not evicted or dropped since it was found)? */
  holds(entry: Entry): boolean {
    return this.#entries.get(entry.key) === entry;
  }

  values(): IterableIterator<Entry> {
    return this.#entries.values();
  }

  /**
   * A new token for the entry. The route has moved to this key (subject or certificate
   * rotated): its other entries are obsolete, unless an exchange of theirs is under way.
   */
  store(entry: Entry, plan: RefreshPlan): void {
    const { redactor } = this.#options;
    if (entry.token) redactor.forget(entry.token.accessToken);
    redactor.register(plan.token.accessToken);
    entry.token = plan.token;
    entry.usableUntil = plan.usableUntil;
    entry.refreshAt = plan.refreshAt;
    if (!this.holds(entry)) this.#entries.set(entry.key, entry);
    for (const other of this.#entries.values()) {
      if (other !== entry && other.route === entry.route && !other.inflight) this.drop(other);
    }
  }

  /** Forgets the entry's token (an upstream refused it); the entry stays, with its failure history. */
  discard(entry: Entry): void {
    if (entry.token) this.#options.redactor.forget(entry.token.accessToken);
    entry.token = undefined;
    entry.usableUntil = 0;
    entry.refreshAt = 0;
  }

  drop(entry: Entry): void {
    this.#options.dropped(entry);
    const slot = this.#slots.get(entry.route.name);
    if (slot?.lastEntry === entry) slot.lastEntry = undefined;
    if (entry.token) this.#options.redactor.forget(entry.token.accessToken);
    this.#entries.delete(entry.key);
  }

  /** The route's entries holding this token. */
  holding(routeName: string, accessToken: string): Entry[] {
    return [...this.#entries.values()].filter((e) => e.route.name === routeName && e.token?.accessToken === accessToken);
  }

  /**
   * Issue 10 item 13: another entry of the same route whose token is still usable at `t`,
   * the longest-lived: the route's token from before a subject-token rotation. Only one
   * obtained with the same certificate generation: a token bound to a retired certificate
   * goes with that certificate.
   */
  previous(entry: Entry, t: number): Entry | undefined {
    let previous: Entry | undefined;
    for (const e of this.#entries.values()) {
      if (e === entry || e.route !== entry.route || e.identity !== entry.identity || !e.token || t >= e.usableUntil) continue;
      if (!previous || e.usableUntil > previous.usableUntil) previous = e;
    }
    return previous;
  }

  /** The route's entry whose token expires last (what /readyz and the metrics report). */
  latest(route: RouteExchange): Entry | undefined {
    let best: Entry | undefined;
    for (const e of this.#entries.values()) {
      if (e.route === route && (!best || (e.token?.expiresAt ?? 0) > (best.token?.expiresAt ?? 0))) best = e;
    }
    return best;
  }

  /** Forgets every cached token (the cache is closing); the entries stay, inert. */
  forgetAll(): void {
    for (const e of this.#entries.values()) if (e.token) this.#options.redactor.forget(e.token.accessToken);
  }

  #evictLeastRecentlyUsed(keep: Entry): void {
    let oldest: Entry | undefined;
    for (const e of this.#entries.values()) {
      if (e !== keep && !e.inflight && (!oldest || e.lastUsed < oldest.lastUsed)) oldest = e;
    }
    if (oldest) this.drop(oldest);
  }
}

/** The fixed part of a route's key; a route of the default profile keeps the key it had before profiles. */
function keyPrefix(route: RouteExchange): string {
  return JSON.stringify(route.sts === undefined || route.sts === DEFAULT_STS_PROFILE ? [route.name, route.params] : [route.name, route.params, route.sts]);
}

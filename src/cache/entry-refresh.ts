/**
 * Exchanging for a cache entry: one exchange in flight per entry, its outcome recorded on
 * the entry (the token and its refresh-ahead time, or the failure and its backoff), and the
 * entry's timer armed for the next refresh or retry.
 */
import { assertUsable, type SubjectToken, type SubjectTokenProvider } from '../credentials/subject-token.js';
import type { DpopKey } from '../dpop/key.js';
import { isDpopTokenType } from '../sts/dpop-binding.js';
import type { Exchange } from '../sts/client.js';
import type { IdentityGeneration } from '../tls/identity.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';
import type { CachedToken } from './cached-token.js';
import type { Entry, EntryTable } from './entries.js';
import { refreshPlan, type RefreshPolicy, type RefreshSchedule } from './refresh-schedule.js';
import type { ActorToken, RouteCredentials, RouteExchange } from './route-exchange.js';
import { singleFlight } from './single-flight.js';

export interface ExchangeObserver {
  /**
   * An exchange ended: `error` is what it failed with, absent when it succeeded; `token` the
   * token it stored when it succeeded (for the operator log's claims, never to be shown).
   */
  exchanged?(route: string, seconds: number, error?: unknown, token?: CachedToken): void;
}

export interface EntryRefreshOptions {
  readonly table: EntryTable;
  readonly schedule: RefreshSchedule<Entry>;
  readonly exchange: Exchange;
  readonly subjectTokens: SubjectTokenProvider;
  readonly actorToken: ActorToken | undefined;
  readonly identity: () => IdentityGeneration | undefined;
  /** The current DPoP key, for a route with `binding: dpop`. */
  readonly dpopKey: (route: RouteExchange) => DpopKey | undefined;
  readonly refresh: RefreshPolicy;
  readonly backoff: BackoffPolicy;
  readonly observer: ExchangeObserver;
  readonly now: () => number;
  readonly random: () => number;
}

export interface EntryRefresh {
  /** The entry's exchange in flight, or a new one for this subject token. */
  exchange(entry: Entry, subject: SubjectToken): Promise<CachedToken>;
  /** An exchange for the route's *current* subject token and identity: after a rotation the key moves on. */
  refreshRoute(route: RouteExchange): Promise<CachedToken>;
  /** The route's own credentials (issue 13), else the provider's. */
  credentials(route: RouteExchange): RouteCredentials;
  /** Arms the refresh-ahead timer of an entry whose token came from elsewhere (a reload's carry-over). */
  rearm(entry: Entry): void;
}

export function createEntryRefresh(options: EntryRefreshOptions): EntryRefresh {
  const { table, schedule, observer, now } = options;
  const defaults: RouteCredentials = { subjectTokens: options.subjectTokens, actorToken: options.actorToken, exchange: options.exchange };
  const credentials = (route: RouteExchange): RouteCredentials => route.credentials ?? defaults;

  function exchange(entry: Entry, subject: SubjectToken): Promise<CachedToken> {
    return singleFlight(entry, () => {
      const started = now();
      return exchangeOnce(entry, subject, started).then(
        (issued) => {
          const token = succeeded(entry, issued);
          observer.exchanged?.(entry.route.name, (now() - started) / 1000, undefined, token);
          return token;
        },
        (err: unknown) => {
          failed(entry, err);
          observer.exchanged?.(entry.route.name, (now() - started) / 1000, err);
          throw err;
        },
      );
    });
  }

  async function exchangeOnce(entry: Entry, subject: SubjectToken, started: number): Promise<CachedToken> {
    const own = credentials(entry.route);
    assertUsable(subject, own.subjectTokens.description, started);
    const actor = own.actorToken;
    const params = {
      ...entry.route.params,
      subjectToken: subject.value,
      subjectTokenType: subject.type,
      ...(actor ? { actorToken: actor.current(), actorTokenType: actor.type } : {}),
      ...(entry.dpopKey && entry.route.dpop ? { dpop: { key: entry.dpopKey, allowBearer: entry.route.dpop.allowBearer } } : {}),
    };
    const issued = await own.exchange(params, entry.identity, entry.route.name);
    // A DPoP token travels with the key it is bound to; a Bearer one (allowBearer) without.
    const dpop = entry.dpopKey && isDpopTokenType(issued.tokenType) ? { dpop: entry.dpopKey } : {};
    return { ...issued, identity: entry.identity, ...dpop };
  }

  function succeeded(entry: Entry, issued: CachedToken): CachedToken {
    const plan = refreshPlan(issued, options.refresh);
    table.store(entry, plan);
    entry.consecutiveFailures = 0;
    entry.lastError = undefined;
    entry.nextAttemptAt = 0;
    schedule.at(entry, plan.refreshAt, () => due(entry));
    return plan.token;
  }

  function failed(entry: Entry, err: unknown): void {
    entry.consecutiveFailures += 1;
    entry.lastError = err;
    entry.nextAttemptAt = now() + backoffDelay(entry.consecutiveFailures, options.backoff, options.random);
    // A lazy route without a token retries when next asked; anything else retries on its own.
    const stillValid = entry.token !== undefined && now() < entry.usableUntil;
    if (stillValid || !entry.route.lazy) schedule.at(entry, entry.nextAttemptAt, () => due(entry));
  }

  /** Timer: refresh ahead or retry, as long as someone still wants this route's token. */
  function due(entry: Entry): void {
    if (!table.holds(entry)) return;
    const t = now();
    const wanted = !entry.route.lazy || entry.lastUsed > (entry.token?.issuedAt ?? 0) - 1;
    if (!wanted) {
      // Idle lazy route: let the token lapse and forget it once it is unusable.
      if (entry.token && t < entry.usableUntil) schedule.at(entry, entry.usableUntil, () => due(entry));
      else table.drop(entry);
      return;
    }
    void refreshRoute(entry.route).catch(() => {});
  }

  async function refreshRoute(route: RouteExchange): Promise<CachedToken> {
    const subject = credentials(route).subjectTokens.current();
    return exchange(table.entryFor(route, subject, options.identity(), options.dpopKey(route)), subject);
  }

  return { exchange, refreshRoute, credentials, rearm: (entry) => schedule.at(entry, entry.refreshAt, () => due(entry)) };
}

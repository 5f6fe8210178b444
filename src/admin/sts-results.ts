/**
 * Each STS profile's last exchange result, for /status: when, how it ended (the metric's
 * closed set of results) and the error code. Recorded from the same observer the metrics
 * use, keyed by the profile a route names (`routes[].sts`, issue 13), `default` when none.
 */
import type { TokenProviderObserver } from '../cache/token-provider.js';
import { SidecarError } from '../errors.js';
import { exchangeResult, type ExchangeResult } from './exchange-result.js';

export interface StsResult {
  /** ISO time the exchange ended. */
  readonly at: string;
  readonly outcome: ExchangeResult;
  /** The failure's code (ERR_UNKNOWN for anything not ours); absent on success. */
  readonly code?: string;
  /** The route whose exchange it was. */
  readonly route: string;
}

export interface StsResults {
  /** The last result per profile, profiles in name order; a profile never used has none. */
  last(): Readonly<Record<string, StsResult>>;
  /** Wraps an observer so every exchange it sees is recorded. */
  observe(observer: TokenProviderObserver): TokenProviderObserver;
}

/** `profileOf`: the profile a route exchanges with. */
export function createStsResults(profileOf: (route: string) => string, now: () => number = Date.now): StsResults {
  const results = new Map<string, StsResult>();
  return {
    last() {
      return Object.fromEntries([...results].sort(([a], [b]) => a.localeCompare(b)));
    },
    observe(observer) {
      return {
        ...observer,
        exchanged(route, seconds, error, token) {
          observer.exchanged?.(route, seconds, error, token);
          const code = error === undefined ? undefined : error instanceof SidecarError ? error.code : 'ERR_UNKNOWN';
          results.set(profileOf(route), { at: new Date(now()).toISOString(), outcome: exchangeResult(error), ...(code ? { code } : {}), route });
        },
      };
    },
  };
}

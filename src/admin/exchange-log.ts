/**
 * What the log says about token exchanges: a success at debug (one per refresh would
 * flood info), a failure at warn with its result and cause. Added around the metrics'
 * observer so the cache itself stays free of logging policy.
 */
import type { TokenProviderObserver } from '../cache/token-provider.js';
import type { Logger } from '../log/logger.js';
import { exchangeResult } from './exchange-result.js';

export function withExchangeLogs(observer: TokenProviderObserver, logger: Logger): TokenProviderObserver {
  return {
    ...observer,
    exchanged(route, seconds, error) {
      observer.exchanged?.(route, seconds, error);
      if (error === undefined) logger.debug({ route, ms: Math.round(seconds * 1000) }, 'token exchanged');
      else logger.warn({ route, result: exchangeResult(error), err: error }, 'token exchange failed');
    },
  };
}

/**
 * What the log says about token exchanges, for an operator at `info` (issue 13): each route's
 * first token (issuer, subject, audience, expiry; never the token), a recovery after failures
 * ("route orders recovered after 4 failed exchanges"), and each failure at warn as one line
 * with its result, code and cause (an expected failure has no stack: log/logger.ts). Routine
 * refreshes are at debug: one per route per token lifetime would flood info. Added around the
 * metrics' observer so the cache itself stays free of logging policy.
 */
import type { CachedToken, TokenProviderObserver } from '../cache/token-provider.js';
import { SidecarError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { publicClaims } from '../log/token-claims.js';
import { exchangeResult } from './exchange-result.js';

export function withExchangeLogs(observer: TokenProviderObserver, logger: Logger): TokenProviderObserver {
  /** Per route: failed exchanges since its last success. */
  const failures = new Map<string, number>();
  /** Routes that had their first token. */
  const served = new Set<string>();
  return {
    ...observer,
    exchanged(route, seconds, error, token) {
      observer.exchanged?.(route, seconds, error, token);
      const ms = Math.round(seconds * 1000);
      if (error !== undefined) {
        const n = (failures.get(route) ?? 0) + 1;
        failures.set(route, n);
        const code = error instanceof SidecarError ? error.code : undefined;
        logger.warn({ route, result: exchangeResult(error), ...(code ? { code } : {}), failures: n, ms, err: error }, 'token exchange failed');
        return;
      }
      const failed = failures.get(route) ?? 0;
      failures.delete(route);
      const facts = token ? tokenFacts(token) : {};
      if (!served.has(route)) {
        served.add(route);
        logger.info({ route, ...facts, ms, ...(failed > 0 ? { failedBefore: failed } : {}) }, `first token for route ${route}`);
      } else if (failed > 0) {
        logger.info({ route, failures: failed, ...facts, ms }, `route ${route} recovered after ${failed} failed exchange${failed === 1 ? '' : 's'}`);
      } else if (logger.isLevelEnabled('debug')) {
        logger.debug({ route, ...facts, ms }, 'token refreshed');
      }
    },
  };
}

/** Safe to log: the JWT's public claims and the expiry the cache holds, never the token. */
function tokenFacts(token: CachedToken): Record<string, unknown> {
  const claims = publicClaims(token.accessToken);
  return {
    ...(claims?.issuer ? { issuer: claims.issuer } : {}),
    ...(claims?.subject ? { subject: claims.subject } : {}),
    ...(claims?.audience ? { audience: claims.audience } : {}),
    expiresAt: new Date(token.expiresAt).toISOString(),
  };
}

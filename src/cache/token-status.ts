/**
 * What the cache can say about each route's token without showing it (readiness, /status,
 * the gauges): valid or not, expiry, failures, and the public claims of the current token,
 * decoded once per token (the gauges read this at every scrape).
 */
import { DEFAULT_STS_PROFILE } from '../config/cross-references.js';
import { SidecarError } from '../errors.js';
import { publicClaims, type PublicClaims } from '../log/token-claims.js';
import type { CachedToken } from './cached-token.js';
import type { EntryTable } from './entries.js';
import type { RouteExchange } from './route-exchange.js';

export interface RouteTokenStatus {
  readonly route: string;
  readonly lazy: boolean;
  readonly valid: boolean;
  readonly expiresInSeconds: number | undefined;
  readonly refreshing: boolean;
  readonly consecutiveFailures: number;
  readonly lastErrorCode: string | undefined;
  /** The route's STS profile (issue 13); set by the provider, optional only for hand-built values. */
  readonly sts?: string;
  /**
   * For /status: the certificate the current token is bound to, its `cnf.x5t#S256` (RFC 8705
   * 3.1), else the thumbprint of the identity it was obtained with; undefined without either.
   */
  readonly boundThumbprint?: string | undefined;
  /** For /status: the DPoP key the current token is bound to, its `cnf.jkt` (RFC 9449 6.1), else the key it was obtained with. */
  readonly boundKeyThumbprint?: string | undefined;
  /** The current token's `iss`, `sub` and `aud` when it is a JWT (decoded, never shown). */
  readonly issuer?: string | undefined;
  readonly subject?: string | undefined;
  readonly audience?: readonly string[] | undefined;
}

export function createStatusReader(routes: readonly RouteExchange[], table: EntryTable, now: () => number): (t?: number) => RouteTokenStatus[] {
  const claimsOf = new WeakMap<CachedToken, PublicClaims | null>();
  const tokenFacts = (token: CachedToken | undefined) => {
    if (!token) return {};
    let claims = claimsOf.get(token);
    if (claims === undefined) claimsOf.set(token, (claims = publicClaims(token.accessToken) ?? null));
    return {
      boundThumbprint: claims?.boundThumbprint ?? token.identity?.thumbprint,
      boundKeyThumbprint: claims?.boundKeyThumbprint ?? token.dpop?.thumbprint,
      issuer: claims?.issuer,
      subject: claims?.subject,
      audience: claims?.audience,
    };
  };
  return (t = now()) =>
    routes.map((route) => {
      const best = table.latest(route);
      const lastError = best?.lastError;
      return {
        ...tokenFacts(best?.token),
        route: route.name,
        lazy: route.lazy,
        valid: best?.token !== undefined && t < best.usableUntil,
        expiresInSeconds: best?.token ? Math.max(0, (best.token.expiresAt - t) / 1000) : undefined,
        refreshing: best?.inflight !== undefined,
        consecutiveFailures: best?.consecutiveFailures ?? 0,
        lastErrorCode: lastError instanceof SidecarError ? lastError.code : lastError ? 'ERR_UNKNOWN' : undefined,
        sts: route.sts ?? DEFAULT_STS_PROFILE,
      };
    });
}

/**
 * `callers: pod-token`: a caller of the local token endpoint proves it runs in this pod
 * by presenting the pod's own subject token (the projected service-account token the
 * sidecar exchanges), compared in constant time. Across a rotation the app and the
 * sidecar may read the file a moment apart, so the previous token stays acceptable
 * until its own expiry (at most PREVIOUS_GRACE_MS for a token that is not a JWT).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { jwtExpiry } from '../credentials/subject-token.js';

export interface PodTokenSource {
  current(): string;
  onChange(listener: () => void): void;
}

const PREVIOUS_GRACE_MS = 5 * 60_000;

export function createPodTokenCheck(source: PodTokenSource, now: () => number = Date.now): (presented: string) => boolean {
  let current = describe(source.current());
  let previous: { digest: Buffer; until: number } | undefined;
  source.onChange(() => {
    const next = describe(source.current());
    if (next.digest.equals(current.digest)) return;
    previous = { digest: current.digest, until: current.expiresAt ?? now() + PREVIOUS_GRACE_MS };
    current = next;
  });
  return (presented) => {
    // Digests have equal length, so timingSafeEqual never throws and leaks no length.
    // A trailing newline (a file read as is) is not part of the token.
    const candidate = digest(presented.trim());
    if (timingSafeEqual(candidate, current.digest)) return true;
    return previous !== undefined && now() < previous.until && timingSafeEqual(candidate, previous.digest);
  };
}

function describe(value: string): { digest: Buffer; expiresAt: number | undefined } {
  return { digest: digest(value), expiresAt: jwtExpiry(value) };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * Issue 13: with several subject tokens, the caller must present the subject token of the
 * route it is served: `check(presented)` (no route) accepts the token of any served route,
 * so an unauthorised caller learns nothing about the routes; `check(presented, route)` then
 * accepts only that route's own. One check per distinct source, so rotations are followed once.
 */
export function createRoutePodTokenCheck(
  sourceOf: (route: string) => PodTokenSource,
  routes: readonly string[],
  now: () => number = Date.now,
): (presented: string, route?: string) => boolean {
  const checks = new Map<PodTokenSource, (presented: string) => boolean>();
  const byRoute = new Map<string, (presented: string) => boolean>();
  for (const route of routes) {
    const source = sourceOf(route);
    let check = checks.get(source);
    if (!check) checks.set(source, (check = createPodTokenCheck(source, now)));
    byRoute.set(route, check);
  }
  return (presented, route) => {
    if (route !== undefined) return byRoute.get(route)?.(presented) ?? false;
    for (const check of checks.values()) if (check(presented)) return true;
    return false;
  };
}

/**
 * How long to wait after consecutive exchange failures: exponential, capped, with "equal
 * jitter" (half fixed, half random) so many sidecars restarted together do not hammer a
 * recovering STS in lockstep.
 */

export interface BackoffPolicy {
  /** The delay after the first failure (its ceiling: jitter takes it down to half). */
  readonly initialDelayMs: number;
  /** No delay grows past this. */
  readonly maxDelayMs: number;
}

/** The delay before the next attempt after `failures` consecutive failures (1 or more). */
export function backoffDelay(failures: number, policy: BackoffPolicy, random: () => number): number {
  // The exponent is capped so 2 ** n stays finite whatever the failure count.
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.min(failures - 1, 30));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * The first half of a shutdown (issue 13): readiness already fails, but the listeners keep
 * accepting, because an app in its own shutdown may still call out (a classic sidecar gets
 * SIGTERM together with the app). This waits until nothing has been in flight for `idleMs`,
 * or until `windowMs` has passed, whichever comes first.
 */
export interface QuietOptions {
  /** Requests and tunnels being served now, over every generation. */
  readonly inFlight: () => number;
  readonly idleMs: number;
  readonly windowMs: number;
  /** How often to look (default 50 ms). */
  readonly pollMs?: number;
}

export function waitForQuiet({ inFlight, idleMs, windowMs, pollMs = 50 }: QuietOptions): Promise<void> {
  const started = Date.now();
  let idleSince = inFlight() === 0 ? started : undefined;
  return new Promise((resolve) => {
    const look = () => {
      const t = Date.now();
      if (inFlight() > 0) idleSince = undefined;
      else idleSince ??= t;
      if (t - started >= windowMs || (idleSince !== undefined && t - idleSince >= idleMs)) return resolve();
      setTimeout(look, Math.max(1, Math.min(pollMs, windowMs - (t - started)))).unref();
    };
    look();
  });
}

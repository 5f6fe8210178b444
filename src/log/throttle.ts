/**
 * Per-key log throttling for events that repeat per request (an STS outage refuses every
 * request; a dead upstream fails every one). The first event of a key in each window is
 * logged, the rest are counted and reported with the next one that gets through.
 */
export class LogThrottle {
  readonly #windowMs: number;
  readonly #state = new Map<string, { until: number; suppressed: number }>();

  constructor(windowMs = 5000) {
    this.#windowMs = windowMs;
  }

  /** Returns undefined when this event should not be logged, else how many were suppressed before it. */
  admit(key: string, now = Date.now()): number | undefined {
    const s = this.#state.get(key);
    if (s && now < s.until) {
      s.suppressed += 1;
      return undefined;
    }
    const suppressed = s?.suppressed ?? 0;
    this.#state.set(key, { until: now + this.#windowMs, suppressed: 0 });
    return suppressed;
  }
}

/**
 * Waiting in tests: `eventually` awaits a condition with a deadline instead of sleeping a
 * fixed time and hoping, and fails naming what it waited for. `sleep` is only for the
 * rare test that means "nothing happens during this time" (say why where it is used).
 */

export interface EventuallyOptions {
  /** Give up after this long (default 5000 ms). */
  readonly timeoutMs?: number;
  /** Check again after this long (default 10 ms). */
  readonly intervalMs?: number;
  /** What is awaited, for the failure message (default: the condition's source); a function is called at the failure. */
  readonly what?: string | (() => string);
}

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

/**
 * Resolves with the condition's first truthy value. A condition that throws counts as
 * "not yet" (a server still starting), except a failed assertion, which fails at once as it
 * would have in a hand-written loop. Rejects after `timeoutMs` naming the condition and
 * keeping the last error as `cause`.
 */
export async function eventually<T>(condition: () => T | Promise<T>, options: EventuallyOptions = {}): Promise<Truthy<Awaited<T>>> {
  const { timeoutMs = 5000, intervalMs = 10 } = options;
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as Truthy<Awaited<T>>;
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ERR_ASSERTION') throw err;
      lastError = err;
    }
    if (Date.now() - started >= timeoutMs) {
      const what = typeof options.what === 'function' ? options.what() : (options.what ?? condition.toString().replace(/\s+/g, ' '));
      const why = lastError === undefined ? '' : `; last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}

/** A fixed wait: only where a test means "nothing happens during this time". */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What a sidecar owns and must close: listeners, upstream pools, file watchers, timers.
 * Each part registers its own close as it is opened; closing runs them in reverse order
 * (the last opened depends on the earlier ones), on shutdown and on a failed start alike.
 * Replaces the `cleanups` arrays once passed from main.ts into each module (issue 11 item 4).
 */

export type Close = () => void | Promise<void>;

/** The one thing a module that opens something needs: a place to leave its close. */
export interface Deferrer {
  defer(close: Close): void;
}

export class Resources implements Deferrer {
  readonly #stack: Close[] = [];

  defer(close: Close): void {
    this.#stack.push(close);
  }

  /**
   * Close everything, newest first. One failing close does not keep the rest open; the
   * first failure is thrown once all have run. Safe to call again: the stack empties.
   */
  async close(): Promise<void> {
    const failures: unknown[] = [];
    for (let close = this.#stack.pop(); close !== undefined; close = this.#stack.pop()) {
      try {
        await close();
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length > 0) throw failures[0];
  }
}

/**
 * A fake clock for code that takes `now` and `timers` (the token cache): time moves only
 * when a test advances it, so days of refreshes run in milliseconds without sleeping.
 * Delays behave as Node's do: one past 2^31-1 ms, under 1 ms or not a number fires after
 * 1 ms (Node prints a TimeoutOverflowWarning), so code that relies on a long delay shows
 * the same storm here as in production.
 */
import type { Timers } from '../../src/cache/token-provider.js';

const NODE_MAX_DELAY_MS = 2 ** 31 - 1;

export interface FakeClock {
  now(): number;
  readonly timers: Timers;
  /** Runs every timer due within `ms`, in order, letting promises settle after each. */
  advance(ms: number): Promise<void>;
  /** The longest delay any code asked for (before Node's 1 ms fallback). */
  readonly longestDelayAsked: number;
  /** Timers that fired so far. */
  readonly fired: number;
}

interface Pending {
  readonly at: number;
  readonly seq: number;
  readonly callback: () => void;
}

/** Lets promise chains started by a timer (an exchange, its bookkeeping) run to completion. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

export function createFakeClock(start = Date.now(), options: { maxFirings?: number } = {}): FakeClock {
  let time = start;
  let seq = 0;
  let longest = 0;
  let fired = 0;
  const maxFirings = options.maxFirings ?? 100_000;
  const pending = new Map<number, Pending>();

  const timers: Timers = {
    setTimeout(callback, ms) {
      longest = Math.max(longest, ms);
      const delay = ms > NODE_MAX_DELAY_MS || !(ms >= 1) ? 1 : ms;
      const id = ++seq;
      pending.set(id, { at: time + delay, seq: id, callback });
      return id;
    },
    clearTimeout(handle) {
      pending.delete(handle as number);
    },
  };

  function nextDue(until: number): [number, Pending] | undefined {
    let next: [number, Pending] | undefined;
    for (const entry of pending) {
      const p = entry[1];
      if (p.at <= until && (!next || p.at < next[1].at || (p.at === next[1].at && p.seq < next[1].seq))) next = entry;
    }
    return next;
  }

  return {
    now: () => time,
    timers,
    async advance(ms) {
      const until = time + ms;
      await settle();
      for (let due = nextDue(until); due; due = nextDue(until)) {
        // A runaway loop (a timer re-armed at 1 ms forever) stops here rather than hanging the test.
        if (fired >= maxFirings) break;
        pending.delete(due[0]);
        time = due[1].at;
        fired++;
        due[1].callback();
        await settle();
      }
      time = until;
      await settle();
    },
    get longestDelayAsked() {
      return longest;
    },
    get fired() {
      return fired;
    },
  };
}

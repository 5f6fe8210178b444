/**
 * The load generator, the same for every case: an undici Pool with one connection per
 * unit of concurrency (pipelining 1); each "worker" keeps exactly one request in flight,
 * looping until the window closes. A warm-up phase opens the connections and lets the
 * JITs settle; only requests that complete inside the measured window count, both for
 * throughput and for the latency sample (process.hrtime.bigint() around each request).
 */
import { Pool, type Dispatcher } from 'undici';

export interface LoadOptions {
  /** e.g. http://127.0.0.1:PORT (https:// with `connect` for a TLS case). */
  readonly origin: string;
  readonly path: string;
  readonly connections: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly method?: Dispatcher.HttpMethod;
  readonly headers?: Record<string, string>;
  /** TLS settings for an https origin (trust, client certificate). */
  readonly connect?: Pool.Options['connect'];
  /** Called as the measured window opens and closes (e.g. CPU marks in the server processes); awaited before run() resolves. */
  readonly onWindowStart?: () => Promise<unknown>;
  readonly onWindowEnd?: () => Promise<unknown>;
}

export interface LatencySummary {
  readonly count: number;
  readonly minUs: number;
  readonly meanUs: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
}

export interface LoadResult {
  readonly connections: number;
  /** Requests completed (any status) inside the measured window. */
  readonly requests: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly windowSeconds: number;
  readonly rps: number;
  readonly latency: LatencySummary;
}

/** Growable Float64Array of nanosecond samples (no per-sample allocation while measuring). */
export class LatencyRecorder {
  #data = new Float64Array(1 << 16);
  #n = 0;

  record(ns: number): void {
    if (this.#n === this.#data.length) {
      const bigger = new Float64Array(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.#n++] = ns;
  }

  get count(): number {
    return this.#n;
  }

  summary(): LatencySummary {
    return summarize(this.#data.subarray(0, this.#n));
  }
}

/** Nearest-rank percentile of an ascending-sorted array. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Latency summary in µs (input in ns), percentiles by sorting. */
export function summarize(samplesNs: Float64Array): LatencySummary {
  const sorted = Float64Array.from(samplesNs).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const us = (ns: number) => Math.round(ns / 100) / 10; // µs with 0.1 µs resolution
  return {
    count: sorted.length,
    minUs: us(sorted[0] ?? NaN),
    meanUs: us(sum / sorted.length),
    p50Us: us(percentile(sorted, 50)),
    p90Us: us(percentile(sorted, 90)),
    p99Us: us(percentile(sorted, 99)),
    p999Us: us(percentile(sorted, 99.9)),
    maxUs: us(sorted[sorted.length - 1] ?? NaN),
  };
}

/** One request through pool.dispatch(): resolves with the status once the body has been read (and dropped). */
class OneRequest implements Dispatcher.DispatchHandler {
  #status = 0;
  readonly #resolve: (status: number) => void;
  readonly #reject: (err: Error) => void;

  constructor(resolve: (status: number) => void, reject: (err: Error) => void) {
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** Present so undici treats this as a new-style (v7) handler. */
  onRequestStart(): void {}

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number): void {
    this.#status = statusCode;
  }

  onResponseData(): void {}

  onResponseEnd(): void {
    this.#resolve(this.#status);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.#reject(err);
  }
}

export function sendOnce(pool: Dispatcher, options: Dispatcher.DispatchOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    pool.dispatch(options, new OneRequest(resolve, reject));
  });
}

/** Marks a promise handled now (it is awaited later), so an early rejection is not "unhandled". */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(options.origin, {
    connections: options.connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    ...(options.connect ? { connect: options.connect } : {}),
  });
  const request: Dispatcher.DispatchOptions = {
    path: options.path,
    method: options.method ?? 'GET',
    headers: options.headers ?? {},
  };
  const recorder = new LatencyRecorder();
  let measuring = false;
  let stopped = false;
  let requests = 0;
  let non2xx = 0;
  let errors = 0;
  let firstError: string | undefined;
  let windowStart = 0n;
  let windowEnd = 0n;
  const hooks: Array<Promise<unknown>> = [];

  async function worker(): Promise<void> {
    while (!stopped) {
      const t0 = process.hrtime.bigint();
      let status: number;
      try {
        status = await sendOnce(pool, request);
      } catch (err) {
        if (measuring) errors += 1;
        firstError ??= `${(err as { code?: string }).code ?? ''} ${(err as Error).message}`.trim();
        await new Promise((r) => setTimeout(r, 5)); // no hot loop against a dead server
        continue;
      }
      if (!measuring) continue;
      const t1 = process.hrtime.bigint();
      requests += 1;
      if (status < 200 || status > 299) non2xx += 1;
      recorder.record(Number(t1 - t0));
    }
  }

  const warmup = setTimeout(() => {
    windowStart = process.hrtime.bigint();
    measuring = true;
    if (options.onWindowStart) hooks.push(quiet(options.onWindowStart()));
    setTimeout(() => {
      windowEnd = process.hrtime.bigint();
      measuring = false;
      stopped = true;
      if (options.onWindowEnd) hooks.push(quiet(options.onWindowEnd()));
    }, options.durationMs);
  }, options.warmupMs);

  try {
    await Promise.all(Array.from({ length: options.connections }, () => worker()));
    await Promise.all(hooks);
  } finally {
    clearTimeout(warmup);
    await pool.destroy();
  }
  const windowSeconds = Number(windowEnd - windowStart) / 1e9;
  return {
    connections: options.connections,
    requests,
    non2xx,
    errors,
    firstError,
    windowSeconds,
    rps: requests / windowSeconds,
    latency: recorder.summary(),
  };
}

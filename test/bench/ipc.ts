/**
 * The tiny request/reply protocol between the bench orchestrator (parent) and each
 * server child, over the IPC channel of child_process.fork().
 *
 *   parent -> child  { id, op: 'start', options }   child -> { id, ok, value: { info } }
 *   parent -> child  { id, op: 'mark' }             start of a measured window (CPU baseline)
 *   parent -> child  { id, op: 'stats' }            child -> { id, ok, value: ChildStats } since the last mark
 *   parent -> child  { id, op: 'stop' }             child closes its server, replies, exits
 *
 * A child whose IPC channel goes away (parent crashed or was killed) exits on its own.
 */

export type ChildOp = 'start' | 'mark' | 'stats' | 'stop';

export interface ChildRequest {
  readonly id: number;
  readonly op: ChildOp;
  readonly options?: unknown;
}

export interface ChildReply {
  readonly id: number;
  readonly ok: boolean;
  readonly value?: unknown;
  readonly error?: string;
}

/** What a child's server tells the parent once it listens: URLs and anything case-specific. */
export type ServerInfo = Readonly<Record<string, string | number | boolean | null>>;

export interface ChildStats {
  /** CPU time (µs) the child spent since the last 'mark', user and system. */
  readonly userUs: number;
  readonly systemUs: number;
  /** Wall time (µs) since the last 'mark'. */
  readonly elapsedUs: number;
  /** Resident set size now, bytes. */
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  /** Open file descriptors now (Linux /proc/self/fd; the server may leave some out, e.g. the STS's). */
  readonly openFds: number;
}

/** The upstream answers this path with a JSON echo of the request's authorization header. */
export const ECHO_AUTH_PATH = '/__bench/echo-authorization';

/** The path every load request uses. */
export const LOAD_PATH = '/bench/hello';

/** The one gRPC method of the HTTP/2 bench upstream (servers/h2-upstream.ts): raw bytes echoed. */
export const BENCH_UNARY_PATH = '/bench.Echo/Unary';

/**
 * The HTTP/2 rows of `npm run bench` (issue 12), kept short: gRPC unary calls and h2c
 * requests, direct against through a sidecar child whose route speaks h2c upstream
 * (`upstreamProtocol: h2c`), measured in the same run so only the ratios mean much.
 *   - gRPC unary: one grpc-js channel (one HTTP/2 connection), N calls in flight, calls/s;
 *     and one call at a time, p50 latency (the sidecar's added latency is the difference).
 *   - h2c: one node:http2 session, N streams in flight, requests/s.
 * The direct gRPC client sends the token itself; through the sidecar it sends none. The
 * server refuses a call without it, so a measured call is also a checked one.
 * Windows: BENCH_H2_WARMUP_MS (500) and BENCH_H2_DURATION_MS (2000).
 */
import { connect, constants } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { startServerChild, type ServerChild } from './children.js';
import { BENCH_UNARY_PATH, ECHO_AUTH_PATH, LOAD_PATH } from './ipc.js';
import { LatencyRecorder, type LatencySummary } from './load.js';
import { fmt, table } from './report.js';

export interface H2Row {
  readonly name: string;
  readonly concurrency: number;
  readonly rate: number;
  readonly errors: number;
  readonly latency: LatencySummary;
}

export type H2BenchResult =
  | { readonly skipped: string }
  | {
      readonly rows: readonly H2Row[];
      readonly grpcSidecarOverDirect: number;
      readonly grpcP50AddedMsAt1: number;
      readonly h2cSidecarOverDirect: number;
    };

function envInt(name: string, fallback: number): number {
  const n = Number(process.env[name]);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

const WARMUP_MS = envInt('BENCH_H2_WARMUP_MS', 500);
const DURATION_MS = envInt('BENCH_H2_DURATION_MS', 2000);

/** Runs `one()` from `concurrency` workers back to back; records latencies inside the window only. */
async function closedLoop(concurrency: number, one: () => Promise<void>): Promise<{ rate: number; errors: number; latency: LatencySummary }> {
  const recorder = new LatencyRecorder();
  let errors = 0;
  let measuring = false;
  let done = false;
  let firstError: unknown;
  const worker = async () => {
    while (!done) {
      const start = process.hrtime.bigint();
      try {
        await one();
        if (measuring) recorder.record(Number(process.hrtime.bigint() - start));
      } catch (err) {
        firstError ??= err;
        if (measuring) errors++;
        if (errors > 100) throw err;
      }
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  measuring = true;
  const from = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, DURATION_MS));
  measuring = false;
  const seconds = Number(process.hrtime.bigint() - from) / 1e9;
  done = true;
  await Promise.all(workers);
  if (recorder.count === 0) throw new Error(`no successful call in the window (${String(firstError)})`);
  return { rate: recorder.count / seconds, errors, latency: recorder.summary() };
}

function grpcCaller(address: string, authorization: string | undefined): { call: () => Promise<void>; close: () => void } {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const payload = Buffer.from('ping');
  const metadata = new grpc.Metadata();
  if (authorization) metadata.set('authorization', authorization);
  const id = (b: Buffer) => b;
  return {
    call: () =>
      new Promise<void>((resolve, reject) =>
        client.makeUnaryRequest(BENCH_UNARY_PATH, id, id, payload, metadata, (err) => (err ? reject(err) : resolve())),
      ),
    close: () => client.close(),
  };
}

function h2cRequester(origin: string): { get: (path: string) => Promise<{ status: number; body: string }>; close: () => void } {
  const session = connect(origin);
  session.on('error', () => undefined);
  return {
    get: (path) =>
      new Promise((resolve, reject) => {
        const stream = session.request({ [constants.HTTP2_HEADER_PATH]: path });
        let status = 0;
        const chunks: Buffer[] = [];
        stream.on('response', (h) => (status = Number(h[constants.HTTP2_HEADER_STATUS])));
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString() }));
        stream.on('error', reject);
        stream.end();
      }),
    close: () => session.close(),
  };
}

/** Starts the HTTP/2 upstream and a sidecar in front of it, measures, stops them; never throws. */
export async function runH2Bench(options: { stsTokenUrl: string; token: string; concurrency: number; log: (msg: string) => void }): Promise<H2BenchResult> {
  const bearer = `Bearer ${options.token}`;
  const children: ServerChild[] = [];
  try {
    const upstream = await startServerChild('h2-upstream', { authorization: bearer });
    children.push(upstream);
    const grpcAddress = String(upstream.info['grpcAddress']);
    const h2cUrl = String(upstream.info['h2cUrl']);
    const sidecarFor = async (upstreamUrl: string) => {
      const child = await startServerChild('sidecar', { stsTokenUrl: options.stsTokenUrl, upstreamUrl, route: { upstreamProtocol: 'h2c' } });
      children.push(child);
      return new URL(String(child.info['url'])).host;
    };
    const grpcSidecar = await sidecarFor(`http://${grpcAddress}`);
    const h2cSidecar = `http://${await sidecarFor(h2cUrl)}`;

    // Checked before any load: the token arrives through the sidecar, and only through it.
    const check = grpcCaller(grpcSidecar, undefined);
    await check.call().finally(check.close);
    const echo = h2cRequester(h2cSidecar);
    const seen = await echo.get(ECHO_AUTH_PATH).finally(echo.close);
    if (seen.status !== 200 || (JSON.parse(seen.body) as { authorization: unknown }).authorization !== bearer) {
      throw new Error(`h2c through the sidecar: the upstream saw ${seen.status} ${seen.body.slice(0, 80)}, not the STS-issued token`);
    }

    const rows: H2Row[] = [];
    const measure = async (name: string, concurrency: number, make: () => { one: () => Promise<void>; close: () => void }) => {
      options.log(`${name} @ ${concurrency} in flight: ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms window`);
      const m = make();
      try {
        rows.push({ name, concurrency, ...(await closedLoop(concurrency, m.one)) });
      } finally {
        m.close();
      }
    };
    const grpcLoad = (address: string, auth: string | undefined) => () => {
      const c = grpcCaller(address, auth);
      return { one: c.call, close: c.close };
    };
    const h2cLoad = (origin: string) => () => {
      const c = h2cRequester(origin);
      return {
        one: async () => {
          const r = await c.get(LOAD_PATH);
          if (r.status !== 200) throw new Error(`status ${r.status}`);
        },
        close: c.close,
      };
    };
    for (const concurrency of [options.concurrency, 1]) {
      await measure('grpc-direct', concurrency, grpcLoad(grpcAddress, bearer));
      await measure('grpc-sidecar', concurrency, grpcLoad(grpcSidecar, undefined));
    }
    await measure('h2c-direct', options.concurrency, h2cLoad(h2cUrl));
    await measure('h2c-sidecar', options.concurrency, h2cLoad(h2cSidecar));

    const find = (name: string, c: number) => rows.find((r) => r.name === name && r.concurrency === c)!;
    const n = options.concurrency;
    return {
      rows,
      grpcSidecarOverDirect: find('grpc-sidecar', n).rate / find('grpc-direct', n).rate,
      grpcP50AddedMsAt1: (find('grpc-sidecar', 1).latency.p50Us - find('grpc-direct', 1).latency.p50Us) / 1000,
      h2cSidecarOverDirect: find('h2c-sidecar', n).rate / find('h2c-direct', n).rate,
    };
  } catch (err) {
    // Before HTTP/2 is in the sidecar (issue 12) these rows cannot run; the rest of the bench still does.
    return { skipped: err instanceof Error ? err.message.split('\n')[0]! : String(err) };
  } finally {
    for (const c of children) await c.stop().catch(() => undefined);
  }
}

/** The section of the report for these rows. */
export function h2Report(result: H2BenchResult): string {
  if ('skipped' in result) return `HTTP/2 rows skipped: ${result.skipped}`;
  return [
    'HTTP/2 (issue 12): gRPC unary over one channel and h2c requests over one session, direct vs through the sidecar (upstreamProtocol h2c).',
    table(
      ['case', 'in flight', 'calls or req/s', 'p50 µs', 'p99 µs', 'errors'],
      result.rows.map((r) => [r.name, r.concurrency, fmt(r.rate), fmt(r.latency.p50Us, 1), fmt(r.latency.p99Us, 1), r.errors]),
    ),
    `gRPC unary calls/s, sidecar / direct: ${fmt(result.grpcSidecarOverDirect, 2)}x; p50 added at 1 in flight: ${fmt(result.grpcP50AddedMsAt1, 3)} ms; ` +
      `h2c req/s, sidecar / direct: ${fmt(result.h2cSidecarOverDirect, 2)}x`,
  ].join('\n');
}

/** The same figures for the BENCH_RESULT line. */
export function h2Json(result: H2BenchResult): unknown {
  if ('skipped' in result) return { skipped: result.skipped };
  const r3 = (v: number) => Number(v.toFixed(3));
  return {
    grpcSidecarOverDirectRps: r3(result.grpcSidecarOverDirect),
    grpcP50AddedMsAt1: Number(result.grpcP50AddedMsAt1.toFixed(4)),
    h2cSidecarOverDirectRps: r3(result.h2cSidecarOverDirect),
    rows: result.rows.map((r) => ({ name: r.name, inFlight: r.concurrency, rate: Number(r.rate.toFixed(1)), errors: r.errors, latencyUs: r.latency })),
  };
}

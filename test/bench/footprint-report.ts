/**
 * The table of issue 15, every row from this run: each figure as a ratio to its peer measured
 * in the same run (bare node, direct, http-proxy), or a memory figure, against its goal.
 * A row whose part did not run (BENCH_PARTS) says so instead of guessing.
 */
import type { H2BenchResult } from './h2-bench.js';
import { fmt, mb, table } from './report.js';
import { median, type StartupResult } from './startup.js';

const MiB = 1024 * 1024;

export const FOOTPRINT_GOALS = {
  idleRssBytes: 60 * MiB,
  loadRssBytes: 96 * MiB,
  overHttpProxyRps: 2.0,
  cpuOverHttpProxy: 0.5,
  p50AddedOverHttpProxy: 0.5,
  startupOverBareMs: 300,
};

/** What throughputReport() measured, medians over the rounds. */
export interface ThroughputFigures {
  readonly connections: number;
  readonly rounds: number;
  readonly sidecarOverHttpProxyRps: number;
  readonly cpuOverHttpProxy: number;
  readonly sidecarCpuUs: number;
  readonly httpProxyCpuUs: number;
  readonly p50AddedOverHttpProxy: number;
  readonly p50AddedMs: number;
  readonly httpProxyP50AddedMs: number;
  readonly sidecarRssUnderLoadBytes: number;
  readonly h2: H2BenchResult;
}

export interface FootprintRow {
  readonly figure: string;
  readonly result: string;
  readonly goal: string;
  readonly met: boolean | undefined;
}

export function footprintRows(t: ThroughputFigures | undefined, startup: StartupResult | undefined, soakPeakRssBytes: number | undefined): FootprintRow[] {
  const rows: FootprintRow[] = [];
  const notRun = (part: string) => `not run (BENCH_PARTS has no ${part})`;
  if (startup) {
    const idle = median(startup.sidecar.map((s) => s.idleRssBytes));
    const bare = median(startup.bareNode.map((s) => s.idleRssBytes));
    const anon = median(startup.sidecar.map((s) => s.idleRssAnonBytes));
    const bareAnon = median(startup.bareNode.map((s) => s.idleRssAnonBytes));
    rows.push({
      figure: 'idle RSS, `sts-sidecar run` as the image starts it (bare node http server); anonymous part',
      result: `${mb(idle)} (bare node ${mb(bare)}; ${fmt(idle / bare, 2)}x, +${mb(idle - bare)}); anonymous ${mb(anon)} (bare node ${mb(bareAnon)})`,
      goal: `<= ${mb(FOOTPRINT_GOALS.idleRssBytes)}`,
      met: idle <= FOOTPRINT_GOALS.idleRssBytes,
    });
  } else rows.push({ figure: 'idle RSS', result: notRun('startup'), goal: `<= ${mb(FOOTPRINT_GOALS.idleRssBytes)}`, met: undefined });
  const load = t?.sidecarRssUnderLoadBytes;
  const loadKnown = load !== undefined && Number.isFinite(load);
  rows.push({
    figure: `RSS under ${t?.connections ?? '?'} connections (highest window end) / in the soak (highest sample)`,
    result: `${loadKnown ? mb(load) : notRun('throughput')} / ${soakPeakRssBytes !== undefined ? mb(soakPeakRssBytes) : notRun('soak')}`,
    goal: `<= ${mb(FOOTPRINT_GOALS.loadRssBytes)}`,
    met: loadKnown || soakPeakRssBytes !== undefined ? (!loadKnown || load <= FOOTPRINT_GOALS.loadRssBytes) && (soakPeakRssBytes === undefined || soakPeakRssBytes <= FOOTPRINT_GOALS.loadRssBytes) : undefined,
  });
  if (t) {
    rows.push({
      figure: `throughput, sidecar / http-proxy 1.18 doing the same injection, ${t.connections} connections`,
      result: `${fmt(t.sidecarOverHttpProxyRps, 2)}x`,
      goal: `>= ${FOOTPRINT_GOALS.overHttpProxyRps}x`,
      met: t.sidecarOverHttpProxyRps >= FOOTPRINT_GOALS.overHttpProxyRps,
    });
    rows.push({
      figure: `CPU per proxied request, sidecar / http-proxy, ${t.connections} connections`,
      result: `${fmt(t.cpuOverHttpProxy, 2)}x (${fmt(t.sidecarCpuUs, 1)} / ${fmt(t.httpProxyCpuUs, 1)} µs)`,
      goal: `<= ${FOOTPRINT_GOALS.cpuOverHttpProxy}x`,
      met: t.cpuOverHttpProxy <= FOOTPRINT_GOALS.cpuOverHttpProxy,
    });
    rows.push({
      figure: 'added p50 over direct at 1 connection, sidecar / http-proxy',
      result: `${fmt(t.p50AddedOverHttpProxy, 2)}x (${fmt(t.p50AddedMs, 3)} / ${fmt(t.httpProxyP50AddedMs, 3)} ms)`,
      goal: `<= ${FOOTPRINT_GOALS.p50AddedOverHttpProxy}x`,
      met: t.p50AddedOverHttpProxy <= FOOTPRINT_GOALS.p50AddedOverHttpProxy,
    });
  } else rows.push({ figure: 'throughput, CPU and p50 against http-proxy', result: notRun('throughput'), goal: '-', met: undefined });
  if (startup) {
    const s = median(startup.sidecar.map((x) => x.readyMs));
    const b = median(startup.bareNode.map((x) => x.readyMs));
    rows.push({
      figure: 'start to ready (eager route, local STS) minus a bare `node` http server starting',
      result: `+${fmt(s - b, 0)} ms (${fmt(s, 0)} ms against ${fmt(b, 0)} ms)`,
      goal: `<= +${FOOTPRINT_GOALS.startupOverBareMs} ms`,
      met: s - b <= FOOTPRINT_GOALS.startupOverBareMs,
    });
  } else rows.push({ figure: 'start to ready', result: notRun('startup'), goal: `<= +${FOOTPRINT_GOALS.startupOverBareMs} ms`, met: undefined });
  if (t && !('skipped' in t.h2)) {
    rows.push({ figure: 'gRPC unary calls/s, sidecar / direct (issue 12)', result: `${fmt(t.h2.grpcSidecarOverDirect, 2)}x`, goal: '-', met: undefined });
    rows.push({ figure: 'gRPC unary p50 added at 1 in flight (issue 12)', result: `${fmt(t.h2.grpcP50AddedMsAt1, 3)} ms`, goal: '-', met: undefined });
    rows.push({ figure: 'h2c requests/s, sidecar / direct (issue 12)', result: `${fmt(t.h2.h2cSidecarOverDirect, 2)}x`, goal: '-', met: undefined });
  }
  return rows;
}

export function footprintReport(rows: FootprintRow[], rounds: number | undefined): string {
  return [
    `Issue 15: footprint and speed (ratios per round, median of ${rounds ?? '-'} rounds; start-up and idle RSS: median of the start-up rounds)`,
    table(
      ['figure', 'result', 'goal', ''],
      rows.map((r) => [r.figure, r.result, r.goal, r.met === undefined ? '' : r.met ? 'met' : 'NOT MET']),
    ),
  ].join('\n');
}

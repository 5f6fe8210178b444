/**
 * `npm run bench`: direct vs sts-sidecar vs a minimal http-proxy, each server in its own
 * process, one load generator (./load.ts) in this one; then a token-cache micro-benchmark.
 * Prints a table and, last, one `BENCH_RESULT {json}` line. Missing a target is reported,
 * never an error: the exit code is non-zero only when the bench itself could not run.
 *
 * Knobs (env): BENCH_WARMUP_MS (1000), BENCH_DURATION_MS (4000), BENCH_CONNECTIONS (50),
 * BENCH_ROUNDS (3), BENCH_STARTUP_ROUNDS (3), BENCH_IDLE_MS (1000), BENCH_EXEC_ARGV_<ROLE>
 * extra node flags for a child (see children.ts), BENCH_SIDECAR_FLAGS=0 (node's defaults for the
 * sidecar children), BENCH_PARTS (startup,throughput,fuzz,soak: which parts run), and those of
 * the fuzz and the soak (./fuzz-soak.ts).
 *
 * Issue 15: the start-up part (./startup.ts) and, last, the issue's table (./footprint-report.ts):
 * every figure a ratio to its peer in the same run (per round, median of the rounds) or a memory
 * figure, against its goal.
 *
 * Issue 10: after the throughput cases, a large run of the HTTP-front fuzz (200,000 requests,
 * the invariant of test/fuzz-front.test.ts checked for each) and a soak under mixed load that
 * prints the sidecar's RSS and open descriptors at its start, middle and end (./fuzz-soak.ts).
 *
 * The mTLS row: an https upstream that requires a client certificate, reached directly by
 * the generator presenting the workload certificate (direct-tls) and through a second
 * sidecar holding that certificate as its identity (sidecar-mtls, plain http in front).
 *
 * Adding a case: start the servers it needs (the upstream child takes `tls`, the sidecar
 * child takes `identity` and extra `route` settings), push a Target with its origin, the
 * generator's `connect` TLS options, the proxy child and the Authorization the upstream
 * must see; verify() and measureCase() need no change.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { arch, cpus, loadavg, platform, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority } from '../../src/pki/certificates.js';
import { Pool, request } from 'undici';
import { runCacheBench, type CacheVariantResult } from './cache-bench.js';
import { h2Json, h2Report, runH2Bench, type H2BenchResult } from './h2-bench.js';
import { killAllChildren, startServerChild, type ServerChild } from './children.js';
import { ECHO_AUTH_PATH, LOAD_PATH, type ChildStats } from './ipc.js';
import { runLoad, type LoadResult } from './load.js';
import { cpuAffinity, cpuSnapshot, machineUsage, type MachineUsage } from './machine.js';
import { fmt, mb, table } from './report.js';
import { startStsStub, type StsStub } from './sts-stub.js';
import { median, runStartupBench, startupEntriesReport, type StartupResult } from './startup.js';
import { footprintReport, footprintRows, type ThroughputFigures } from './footprint-report.js';
import { FUZZ_SOAK_SETTINGS, fuzzSeed, fuzzSoakReport, runFuzzBench, runSoak, startBenchFuzzWorld, type FuzzBenchResult, type SoakResult } from './fuzz-soak.js';

function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  const n = v === undefined || v === '' ? NaN : Number(v);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

const SETTINGS = {
  warmupMs: envInt('BENCH_WARMUP_MS', 1000),
  durationMs: envInt('BENCH_DURATION_MS', 4000),
  saturatingConnections: envInt('BENCH_CONNECTIONS', 50),
  /** Issue 15: every case runs this many times, interleaved; ratios are taken per round, then the median. */
  rounds: envInt('BENCH_ROUNDS', 3),
  startupRounds: envInt('BENCH_STARTUP_ROUNDS', 3),
  idleMs: envInt('BENCH_IDLE_MS', 1000),
};

/** BENCH_PARTS: which parts run, comma-separated (default all): startup, throughput, fuzz, soak. */
const PARTS = new Set((process.env['BENCH_PARTS'] ?? 'startup,throughput,fuzz,soak').split(',').map((p) => p.trim()).filter(Boolean));

/** From the design note. */
const TARGETS = {
  sidecarOverHttpProxyRps: 2,
  p50AddedMsAt1: 0.1,
  sidecarRssBytes: 128 * 1024 * 1024,
};

interface Target {
  readonly name: string;
  readonly description: string;
  readonly origin: string;
  /** Generator-side TLS options for an https origin. */
  readonly connect?: Pool.Options['connect'];
  /** The process that proxies (its CPU per request is reported); absent for direct. */
  readonly proxy?: ServerChild;
  readonly upstream: ServerChild;
  /** The Authorization header the upstream must receive through this target (null: none). */
  readonly expectAuthorization: string | null;
  /** CN of the client certificate the upstream must see (mTLS rows). */
  readonly expectClientCert?: string;
}

interface CpuPerRequest {
  /** CPU µs per request in the proxy process (user + system). */
  readonly proxyUs: number | undefined;
  /** Share of one core the proxy process used during the window. */
  readonly proxyCoreShare: number | undefined;
  readonly upstreamUs: number;
  readonly generatorUs: number;
}

interface CaseResult {
  readonly round: number;
  readonly target: string;
  readonly connections: number;
  readonly load: LoadResult;
  readonly cpu: CpuPerRequest;
  readonly proxyRssBytes: number | undefined;
  /** Whole machine during the window, and the part of it not spent in the bench's own processes. */
  readonly machine: MachineUsage | undefined;
  readonly otherCores: number | undefined;
}

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

function describeAuthorization(value: string | null, expected: string | null): string {
  if (value === null) return 'no authorization header';
  const [scheme, rest] = value.split(' ', 2);
  return `authorization: ${scheme} <${rest?.length ?? 0}-char token${value === expected ? ', the STS-issued one' : ', NOT the STS-issued one'}>`;
}

/** Proves the target forwards to the upstream and injects (or not) exactly what it must. */
async function verify(target: Target): Promise<string> {
  const pool = new Pool(target.origin, target.connect ? { connect: target.connect } : {});
  try {
    const echo = await request(`${target.origin}${ECHO_AUTH_PATH}`, { dispatcher: pool });
    const seen = (await echo.body.json()) as { authorization: string | null; clientCertSubject: string | null };
    if (echo.statusCode !== 200) throw new Error(`${target.name}: echo request answered ${echo.statusCode}`);
    if (target.expectClientCert !== undefined && seen.clientCertSubject !== target.expectClientCert) {
      throw new Error(`${target.name}: the upstream saw client certificate ${seen.clientCertSubject ?? 'none'}, expected ${target.expectClientCert}`);
    }
    if (seen.authorization !== target.expectAuthorization) {
      throw new Error(
        `${target.name}: the upstream saw ${describeAuthorization(seen.authorization, target.expectAuthorization)}; ` +
          `expected ${target.expectAuthorization === null ? 'none' : 'the STS-issued bearer token'} (benchmarking it would be meaningless)`,
      );
    }
    const plain = await request(`${target.origin}${LOAD_PATH}`, { dispatcher: pool });
    await plain.body.text();
    if (plain.statusCode !== 200) throw new Error(`${target.name}: ${LOAD_PATH} answered ${plain.statusCode}`);
    const cert = seen.clientCertSubject ? ` over mTLS as CN=${seen.clientCertSubject}` : '';
    return describeAuthorization(seen.authorization, target.expectAuthorization) + cert;
  } finally {
    await pool.destroy();
  }
}

async function measureCase(target: Target, connections: number, round: number): Promise<CaseResult> {
  const servers = [target.upstream, ...(target.proxy ? [target.proxy] : [])];
  let genMark = process.cpuUsage();
  let genCpu = { user: 0, system: 0 };
  let stats: ChildStats[] = [];
  let machineFrom = cpuSnapshot();
  let machineTo = machineFrom;
  const load = await runLoad({
    origin: target.origin,
    path: LOAD_PATH,
    connections,
    warmupMs: SETTINGS.warmupMs,
    durationMs: SETTINGS.durationMs,
    connect: target.connect,
    onWindowStart: async () => {
      machineFrom = cpuSnapshot();
      genMark = process.cpuUsage();
      await Promise.all(servers.map((s) => s.mark()));
    },
    onWindowEnd: async () => {
      machineTo = cpuSnapshot();
      genCpu = process.cpuUsage(genMark);
      stats = await Promise.all(servers.map((s) => s.stats()));
    },
  });
  if (load.requests - load.non2xx <= 0) {
    throw new Error(`${target.name} @${connections}: no successful request in the window (${load.errors} errors; first: ${load.firstError ?? 'none'})`);
  }
  const perReq = (s: ChildStats | undefined) => (s ? (s.userUs + s.systemUs) / load.requests : undefined);
  const [upstreamStats, proxyStats] = stats;
  const machine = machineUsage(machineFrom, machineTo);
  const benchCoreSeconds = (genCpu.user + genCpu.system + stats.reduce((sum, s) => sum + s.userUs + s.systemUs, 0)) / 1e6;
  return {
    machine,
    otherCores: machine ? Math.max(0, machine.busyCores - benchCoreSeconds / load.windowSeconds) : undefined,
    round,
    target: target.name,
    connections,
    load,
    cpu: {
      proxyUs: perReq(proxyStats),
      proxyCoreShare: proxyStats ? (proxyStats.userUs + proxyStats.systemUs) / proxyStats.elapsedUs : undefined,
      upstreamUs: perReq(upstreamStats)!,
      generatorUs: (genCpu.user + genCpu.system) / load.requests,
    },
    proxyRssBytes: proxyStats?.rssBytes,
  };
}

async function sidecarRssFromMetrics(adminUrl: string): Promise<number | undefined> {
  const res = await request(`${adminUrl}/metrics`);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`sidecar /metrics answered ${res.statusCode}`);
  const m = /^process_resident_memory_bytes\s+(\S+)/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

const round = (v: number | undefined, digits: number) => (v === undefined || !Number.isFinite(v) ? null : Number(v.toFixed(digits)));

async function main(): Promise<void> {
  const started = Date.now();
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  log(`node ${process.version}, ${platform()} ${arch()}, ${cpus().length} CPUs (${cpuModel})`);

  let sts: StsStub | undefined;
  const children: ServerChild[] = [];
  const pkiDir = mkdtempSync(join(tmpdir(), 'sts-sidecar-bench-'));
  let throughput: ThroughputResult | undefined;
  let startup: StartupResult | undefined;
  try {
    if (PARTS.has('startup')) {
      // Its own STS stub, so the throughput part's count of exchanges stays exact. The route's
      // upstream is never dialled before a request, so nothing needs to listen there.
      const startupSts = await startStsStub();
      try {
        log(`start-up: ${SETTINGS.startupRounds} rounds of sts-sidecar run and a bare node http server`);
        startup = await runStartupBench({ stsTokenUrl: startupSts.tokenUrl, upstreamUrl: 'http://127.0.0.1:9', dir: pkiDir, rounds: SETTINGS.startupRounds, idleMs: SETTINGS.idleMs, log });
      } finally {
        await startupSts.close();
      }
    }
    if (PARTS.has('throughput')) {
      sts = await startStsStub();
      const upstream = await startServerChild('upstream', {});
      children.push(upstream);
      const upstreamUrl = String(upstream.info['url']);
      const sidecar = await startServerChild('sidecar', { stsTokenUrl: sts.tokenUrl, upstreamUrl });
      children.push(sidecar);
      const httpProxy = await startServerChild('http-proxy', { upstreamUrl, token: sts.token });
      children.push(httpProxy);
      log(`upstream ${upstreamUrl} (pid ${upstream.pid}), sidecar ${sidecar.info['url']} (pid ${sidecar.pid}), http-proxy ${httpProxy.info['url']} (pid ${httpProxy.pid}), STS ${sts.tokenUrl}`);

      // mTLS: a CA, the upstream's server certificate and the workload's client certificate.
      const ca = createCertificateAuthority({ commonName: 'bench CA' });
      const serverCert = ca.issue({ commonName: 'localhost', subjectAltNames: ['127.0.0.1', 'localhost'], usage: 'server' });
      const workload = ca.issue({ commonName: 'bench-workload', usage: 'client' });
      const identity = { cert: join(pkiDir, 'tls.crt'), key: join(pkiDir, 'tls.key'), ca: join(pkiDir, 'ca.crt') };
      writeFileSync(identity.cert, workload.certPem);
      writeFileSync(identity.key, workload.keyPem);
      writeFileSync(identity.ca, ca.certPem);
      const tlsUpstream = await startServerChild('upstream', { tls: { key: serverCert.keyPem, cert: serverCert.certPem, ca: ca.certPem, requestClientCert: true } });
      children.push(tlsUpstream);
      const tlsUpstreamUrl = String(tlsUpstream.info['url']);
      const mtlsSidecar = await startServerChild('sidecar', { stsTokenUrl: sts.tokenUrl, upstreamUrl: tlsUpstreamUrl, identity });
      children.push(mtlsSidecar);
      log(`mTLS upstream ${tlsUpstreamUrl} (pid ${tlsUpstream.pid}), mTLS sidecar ${mtlsSidecar.info['url']} (pid ${mtlsSidecar.pid})`);

      const bearer = `Bearer ${sts.token}`;
      const targets: Target[] = [
        { name: 'direct', description: 'generator -> upstream', origin: upstreamUrl, upstream, expectAuthorization: null },
        {
          name: 'sidecar',
          description: 'generator -> sts-sidecar (cached token) -> upstream',
          origin: String(sidecar.info['url']),
          proxy: sidecar,
          upstream,
          expectAuthorization: bearer,
        },
        {
          name: 'http-proxy',
          description: 'generator -> http-proxy (proxyReq.setHeader) -> upstream',
          origin: String(httpProxy.info['url']),
          proxy: httpProxy,
          upstream,
          expectAuthorization: bearer,
        },
        {
          name: 'direct-tls',
          description: 'generator -> upstream over mTLS (the generator presents the workload certificate)',
          origin: tlsUpstreamUrl,
          connect: { ca: ca.certPem, cert: workload.certPem, key: workload.keyPem },
          upstream: tlsUpstream,
          expectAuthorization: null,
          expectClientCert: 'bench-workload',
        },
        {
          name: 'sidecar-mtls',
          description: 'generator -> sts-sidecar (cached token, identity) -> upstream over mTLS',
          origin: String(mtlsSidecar.info['url']),
          proxy: mtlsSidecar,
          upstream: tlsUpstream,
          expectAuthorization: bearer,
          expectClientCert: 'bench-workload',
        },
      ];

      const injection: Record<string, string> = {};
      for (const t of targets) {
        injection[t.name] = await verify(t);
        log(`verified ${t.name}: upstream got ${injection[t.name]}`);
      }

      const rssAtStart = {
        sidecar: await sidecarRssFromMetrics(String(sidecar.info['adminUrl'])),
        httpProxy: (await httpProxy.stats()).rssBytes,
      };

      const results: CaseResult[] = [];
      for (let round = 1; round <= SETTINGS.rounds; round++) {
        for (const connections of [SETTINGS.saturatingConnections, 1]) {
          for (const t of targets) {
            log(`round ${round}/${SETTINGS.rounds}: ${t.name} @ ${connections} connection(s): ${SETTINGS.warmupMs} ms warm-up + ${SETTINGS.durationMs} ms window`);
            results.push(await measureCase(t, connections, round));
          }
        }
      }

      // Injection still right after all that load (e.g. no token refresh gone wrong).
      for (const t of targets) await verify(t);
      const sidecarRss = await sidecarRssFromMetrics(String(sidecar.info['adminUrl']));
      const httpProxyRss = (await httpProxy.stats()).rssBytes;
      const stsTokenRequests = sts.tokenRequests();

      for (const c of children.splice(0)) await c.stop();
      // HTTP/2 rows (issue 12), on their own servers once the HTTP/1.1 ones are stopped.
      const h2 = await runH2Bench({ stsTokenUrl: sts.tokenUrl, token: sts.token, concurrency: SETTINGS.saturatingConnections, log });
      await sts.close();
      sts = undefined;

      log('token cache micro-benchmark');
      const cache = runCacheBench();

      throughput = { results, injection, sidecarRss, httpProxyRss, rssAtStart, stsTokenRequests, cache, h2, targets };
    }
  } finally {
    for (const c of children) await c.stop().catch(() => undefined);
    await sts?.close();
    killAllChildren();
    rmSync(pkiDir, { recursive: true, force: true });
  }
  const issue10 = await runIssue10Parts();
  report(throughput, startup, issue10, Date.now() - started, cpuModel);
}

interface ThroughputResult {
  results: CaseResult[];
  injection: Record<string, string>;
  sidecarRss: number | undefined;
  httpProxyRss: number;
  rssAtStart: { sidecar: number | undefined; httpProxy: number };
  stsTokenRequests: number;
  cache: CacheVariantResult[];
  h2: H2BenchResult;
  targets: Target[];
}

interface Issue10Result {
  readonly seed: number;
  readonly fuzz: FuzzBenchResult | undefined;
  readonly soak: SoakResult | undefined;
}

/** The large fuzz run and the soak (issue 10), on one fuzz topology whose sidecar is a child. */
async function runIssue10Parts(): Promise<Issue10Result> {
  const seed = fuzzSeed();
  if (!PARTS.has('fuzz') && !PARTS.has('soak')) return { seed, fuzz: undefined, soak: undefined };
  const { world } = await startBenchFuzzWorld();
  try {
    const fuzz = PARTS.has('fuzz') ? await runFuzzBench(world, seed) : undefined;
    const soak = PARTS.has('soak') ? await runSoak(world, seed) : undefined;
    return { seed, fuzz, soak };
  } finally {
    await world.close();
  }
}

function report(throughput: ThroughputResult | undefined, startup: StartupResult | undefined, issue10: Issue10Result, elapsedMs: number, cpuModel: string): void {
  const t = throughput ? throughputReport(throughput, cpuModel) : undefined;
  const out = [...(t?.lines ?? [])];
  out.push(...fuzzSoakReport(issue10.seed, issue10.fuzz, issue10.soak));
  if (startup) out.push(...startupEntriesReport(startup));
  const soakPeak = issue10.soak ? Math.max(...issue10.soak.figures.map((f) => f.rssBytes)) : undefined;
  const footprint = footprintRows(t?.figures, startup, soakPeak);
  out.push('');
  out.push(footprintReport(footprint, t?.figures.rounds));
  out.push(`whole run: ${fmt(elapsedMs / 1000, 1)} s`);
  console.log(out.join('\n'));
  const { fuzz, soak } = issue10;
  const json = {
    ...(t?.json ?? { version: 1, node: process.version, platform: `${platform()} ${arch()}`, cpus: cpus().length, cpuModel }),
    parts: [...PARTS],
    fuzz: fuzz && {
      seed: issue10.seed,
      settings: { count: FUZZ_SOAK_SETTINGS.fuzzCount, lanes: FUZZ_SOAK_SETTINGS.fuzzLanes },
      sent: fuzz.stats.sent,
      sessions: fuzz.stats.sessions,
      seconds: round(fuzz.stats.seconds, 2),
      sentByMode: fuzz.stats.sentByMode,
      outcomes: fuzz.stats.outcomes,
      setupFailures: fuzz.stats.setupFailures,
      violations: fuzz.violations,
      sidecarBefore: fuzz.before,
      sidecarAfter: fuzz.after,
    },
    soak: soak && { seed: issue10.seed, settings: FUZZ_SOAK_SETTINGS, figures: soak.figures, fuzzSent: soak.fuzzSent, cleanAnswers: soak.cleanAnswers, held: soak.held, violations: soak.violations },
    startup: startup ?? null,
    footprint,
    elapsedMs,
  };
  console.log(`BENCH_RESULT ${JSON.stringify(json)}`);
}

function throughputReport(r: ThroughputResult, cpuModel: string): { lines: string[]; json: Record<string, unknown>; figures: ThroughputFigures } {
  const sat = SETTINGS.saturatingConnections;
  // Issue 15: each figure is taken per round (peers measured minutes apart on a shared machine
  // are not comparable), then the median of the rounds.
  const rounds = [...new Set(r.results.map((c) => c.round))];
  const at = (k: number, target: string, conns: number) => r.results.find((c) => c.round === k && c.target === target && c.connections === conns)!;
  const med = (f: (k: number) => number | undefined) => median(rounds.map((k) => f(k) ?? NaN));
  const rps = (k: number, target: string, conns: number) => at(k, target, conns).load.rps;
  const p50 = (k: number, target: string, conns: number) => at(k, target, conns).load.latency.p50Us;
  const cpu = (k: number, target: string, conns: number) => at(k, target, conns).cpu.proxyUs;
  const mtlsOverDirectTls = med((k) => rps(k, 'sidecar-mtls', sat) / rps(k, 'direct-tls', sat));
  const mtlsP50AddedMs = med((k) => (p50(k, 'sidecar-mtls', 1) - p50(k, 'direct-tls', 1)) / 1000);

  const sidecarOverDirect = med((k) => rps(k, 'sidecar', sat) / rps(k, 'direct', sat));
  const sidecarOverHttpProxy = med((k) => rps(k, 'sidecar', sat) / rps(k, 'http-proxy', sat));
  const p50AddedMs = med((k) => (p50(k, 'sidecar', 1) - p50(k, 'direct', 1)) / 1000);
  const httpProxyP50AddedMs = med((k) => (p50(k, 'http-proxy', 1) - p50(k, 'direct', 1)) / 1000);
  const p50AddedOverHttpProxy = med((k) => (p50(k, 'sidecar', 1) - p50(k, 'direct', 1)) / (p50(k, 'http-proxy', 1) - p50(k, 'direct', 1)));
  const cpuOverHttpProxy = med((k) => (cpu(k, 'sidecar', sat) ?? NaN) / (cpu(k, 'http-proxy', sat) ?? NaN));
  const sidecarCpu = { sat: med((k) => cpu(k, 'sidecar', sat)), one: med((k) => cpu(k, 'sidecar', 1)) };
  const httpProxyCpu = { sat: med((k) => cpu(k, 'http-proxy', sat)), one: med((k) => cpu(k, 'http-proxy', 1)) };
  const mtlsCpu = { sat: med((k) => cpu(k, 'sidecar-mtls', sat)), one: med((k) => cpu(k, 'sidecar-mtls', 1)) };
  const sidecarP50At1Us = med((k) => p50(k, 'sidecar', 1));
  const sidecarRssUnderLoad = Math.max(...r.results.filter((c) => c.target === 'sidecar' && c.connections === sat).map((c) => c.proxyRssBytes ?? NaN));
  const met = {
    sidecarOverHttpProxyRps: sidecarOverHttpProxy >= TARGETS.sidecarOverHttpProxyRps,
    p50AddedMsAt1: p50AddedMs <= TARGETS.p50AddedMsAt1,
    sidecarRssBytes: r.sidecarRss !== undefined && r.sidecarRss < TARGETS.sidecarRssBytes,
  };
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');

  const out: string[] = [];
  out.push('');
  out.push(
    `sts-sidecar bench: node ${process.version}, ${platform()} ${arch()}, ${cpus().length} CPUs (${cpuModel}), ${mb(totalmem())} RAM, ` +
      `CPU affinity ${cpuAffinity() ?? 'unknown'}, load average ${loadavg().map((v) => v.toFixed(2)).join(' ')} at the end`,
  );
  out.push(
    `each case: ${fmt(SETTINGS.warmupMs / 1000, 1)} s warm-up + ${fmt(SETTINGS.durationMs / 1000, 1)} s measured; generator: undici Pool, pipelining 1, ` +
      `GET ${LOAD_PATH}; generator, proxy and upstream each in their own process on 127.0.0.1`,
  );
  out.push('');
  out.push('Cases');
  for (const t of r.targets) out.push(`  ${t.name.padEnd(11)} ${t.description}; upstream got ${r.injection[t.name]}`);
  out.push(`  STS token requests during the whole run: ${r.stsTokenRequests} (expected 2: one exchange at start-up per sidecar, every request served from the cache)`);
  out.push('');
  out.push(
    table(
      ['round', 'case', 'conns', 'req/s', 'p50 µs', 'p90 µs', 'p99 µs', 'max µs', 'requests', 'err', 'non-2xx', 'proxy CPU µs/req', 'proxy core %', 'upstream CPU µs/req', 'generator CPU µs/req', 'machine busy cores', 'not bench cores'],
      r.results.map((c) => [
        c.round,
        c.target,
        c.connections,
        fmt(c.load.rps),
        fmt(c.load.latency.p50Us, 1),
        fmt(c.load.latency.p90Us, 1),
        fmt(c.load.latency.p99Us, 1),
        fmt(c.load.latency.maxUs, 0),
        fmt(c.load.requests),
        c.load.errors,
        c.load.non2xx,
        fmt(c.cpu.proxyUs, 1),
        c.cpu.proxyCoreShare === undefined ? undefined : fmt(c.cpu.proxyCoreShare * 100, 0),
        fmt(c.cpu.upstreamUs, 1),
        fmt(c.cpu.generatorUs, 1),
        fmt(c.machine?.busyCores, 2),
        fmt(c.otherCores, 2),
      ]),
    ),
  );
  out.push('');
  out.push('Results against the design-note targets');
  out.push(
    table(
      ['figure', 'result', 'target', ''],
      [
        [`sidecar req/s / direct req/s (${sat} conns)`, `${fmt(sidecarOverDirect, 2)}x`, '-', ''],
        [`sidecar req/s / http-proxy req/s (${sat} conns)`, `${fmt(sidecarOverHttpProxy, 2)}x`, `>= ${TARGETS.sidecarOverHttpProxyRps}x`, verdict(met.sidecarOverHttpProxyRps)],
        ['p50 added latency, sidecar - direct (1 conn)', `${fmt(p50AddedMs, 3)} ms`, `<= ${TARGETS.p50AddedMsAt1} ms`, verdict(met.p50AddedMsAt1)],
        ['p50 added latency, http-proxy - direct (1 conn)', `${fmt(httpProxyP50AddedMs, 3)} ms`, '-', ''],
        ['sidecar RSS after the run (admin /metrics)', mb(r.sidecarRss), `< ${mb(TARGETS.sidecarRssBytes)}`, verdict(met.sidecarRssBytes)],
        ['sidecar RSS at start, before any load', mb(r.rssAtStart.sidecar), '-', ''],
        ['http-proxy RSS after the run / at start', `${mb(r.httpProxyRss)} / ${mb(r.rssAtStart.httpProxy)}`, '-', ''],
        [`CPU per request, sidecar (${sat} conns / 1 conn)`, `${fmt(sidecarCpu.sat, 1)} / ${fmt(sidecarCpu.one, 1)} µs`, '-', ''],
        [`CPU per request, http-proxy (${sat} conns / 1 conn)`, `${fmt(httpProxyCpu.sat, 1)} / ${fmt(httpProxyCpu.one, 1)} µs`, '-', ''],
        [`CPU per request, http-proxy / sidecar (${sat} conns)`, `${fmt(1 / cpuOverHttpProxy, 2)}x`, '-', ''],
        [`sidecar-mtls req/s / direct-tls req/s (${sat} conns)`, `${fmt(mtlsOverDirectTls, 2)}x`, '-', ''],
        ['p50 added latency, sidecar-mtls - direct-tls (1 conn)', `${fmt(mtlsP50AddedMs, 3)} ms`, '-', ''],
        [`CPU per request, sidecar-mtls (${sat} conns / 1 conn)`, `${fmt(mtlsCpu.sat, 1)} / ${fmt(mtlsCpu.one, 1)} µs`, '-', ''],
      ],
    ),
  );

  out.push('');
  out.push(h2Report(r.h2));

  // Cache: per-lookup cost against what one proxied request costs the sidecar.
  const sidecarCpuUs = sidecarCpu.sat;
  const mapNs = r.cache.find((v) => v.name === 'Map.get')!.nsPerLookup;
  const cacheRows = r.cache.map((v) => ({
    ...v,
    extraOverMapNs: Math.round((v.nsPerLookup - mapNs) * 10) / 10,
    pctOfSidecarCpuPerRequest: (v.nsPerLookup / 1000 / sidecarCpuUs) * 100,
    extraPctOfSidecarCpuPerRequest: ((v.nsPerLookup - mapNs) / 1000 / sidecarCpuUs) * 100,
    pctOfSidecarP50At1: (v.nsPerLookup / 1000 / sidecarP50At1Us) * 100,
  }));
  out.push('');
  out.push(
    `Token cache micro-benchmark (one lookup of an IssuedToken-shaped value with an 800-char token; key built per lookup as token-provider.ts does; ` +
      `median of 5 rounds). Percentages are of the sidecar's measured cost per request: ${fmt(sidecarCpuUs, 1)} µs CPU (${sat} conns), ${fmt(sidecarP50At1Us, 1)} µs p50 (1 conn).`,
  );
  out.push(
    table(
      ['lookup', 'lookups/s', 'ns/lookup', 'extra vs Map ns', '% of sidecar CPU/req', 'extra vs Map, % of CPU/req', '% of sidecar p50 @1'],
      cacheRows.map((v) => [
        v.name,
        fmt(v.lookupsPerSecond),
        fmt(v.nsPerLookup, 1),
        fmt(v.extraOverMapNs, 1),
        fmt(v.pctOfSidecarCpuPerRequest, 3),
        fmt(v.extraPctOfSidecarCpuPerRequest, 3),
        fmt(v.pctOfSidecarP50At1, 3),
      ]),
    ),
  );
  out.push('');
  out.push(
    'Notes: all processes share this machine\'s CPUs, so req/s ratios include the generator\'s and the upstream\'s cost; ' +
      'CPU µs/req is the per-process figure. 1-connection latencies include the kernel waking each process in the chain ' +
      '(on a VM, cross-vCPU wake-ups can dominate); `taskset -c 0 npm run bench` pins every process to one CPU for a software-only figure.',
  );

  const json = {
    version: 1,
    node: process.version,
    platform: `${platform()} ${arch()}`,
    cpus: cpus().length,
    cpuModel: cpuModel,
    cpuAffinity: cpuAffinity() ?? null,
    settings: SETTINGS,
    stsTokenRequests: r.stsTokenRequests,
    cases: r.results.map((c) => ({
      round: c.round,
      target: c.target,
      connections: c.connections,
      rps: round(c.load.rps, 1),
      requests: c.load.requests,
      errors: c.load.errors,
      non2xx: c.load.non2xx,
      windowSeconds: round(c.load.windowSeconds, 3),
      latencyUs: c.load.latency,
      cpuUsPerRequest: { proxy: round(c.cpu.proxyUs, 2), upstream: round(c.cpu.upstreamUs, 2), generator: round(c.cpu.generatorUs, 2) },
      proxyCoreShare: round(c.cpu.proxyCoreShare, 3),
      proxyRssBytes: c.proxyRssBytes ?? null,
      machineBusyCores: round(c.machine?.busyCores, 3),
      machineSoftirqCores: round(c.machine?.softirqCores, 3),
      machineStealCores: round(c.machine?.stealCores, 3),
      notBenchCores: round(c.otherCores, 3),
    })),
    summary: {
      sidecarOverDirectRps: round(sidecarOverDirect, 3),
      sidecarOverHttpProxyRps: round(sidecarOverHttpProxy, 3),
      p50AddedMsAt1: round(p50AddedMs, 4),
      httpProxyP50AddedMsAt1: round(httpProxyP50AddedMs, 4),
      sidecarRssBytes: r.sidecarRss ?? null,
      sidecarRssBytesAtStart: r.rssAtStart.sidecar ?? null,
      httpProxyRssBytes: r.httpProxyRss,
      httpProxyRssBytesAtStart: r.rssAtStart.httpProxy,
      sidecarCpuUsPerRequest: round(sidecarCpu.sat, 2),
      httpProxyCpuUsPerRequest: round(httpProxyCpu.sat, 2),
      sidecarCpuUsPerRequestAt1: round(sidecarCpu.one, 2),
      httpProxyCpuUsPerRequestAt1: round(httpProxyCpu.one, 2),
      sidecarOverHttpProxyCpu: round(cpuOverHttpProxy, 3),
      p50AddedOverHttpProxy: round(p50AddedOverHttpProxy, 3),
      sidecarRssBytesUnderLoad: Number.isFinite(sidecarRssUnderLoad) ? sidecarRssUnderLoad : null,
      sidecarMtlsOverDirectTlsRps: round(mtlsOverDirectTls, 3),
      sidecarMtlsP50AddedMsAt1: round(mtlsP50AddedMs, 4),
      sidecarMtlsCpuUsPerRequest: round(mtlsCpu.sat, 2),
    },
    h2: h2Json(r.h2),
    targets: { ...TARGETS, met },
    cacheBench: {
      sidecarCpuUsPerRequest: round(sidecarCpuUs, 2),
      sidecarP50At1Us: sidecarP50At1Us,
      variants: cacheRows.map((v) => ({
        name: v.name,
        lookupsPerSecond: v.lookupsPerSecond,
        nsPerLookup: v.nsPerLookup,
        extraOverMapNs: v.extraOverMapNs,
        pctOfSidecarCpuPerRequest: round(v.pctOfSidecarCpuPerRequest, 4),
        extraPctOfSidecarCpuPerRequest: round(v.extraPctOfSidecarCpuPerRequest, 4),
        pctOfSidecarP50At1: round(v.pctOfSidecarP50At1, 4),
      })),
    },
  };
  const figures: ThroughputFigures = {
    connections: sat,
    rounds: rounds.length,
    sidecarOverHttpProxyRps: sidecarOverHttpProxy,
    cpuOverHttpProxy,
    sidecarCpuUs: sidecarCpu.sat,
    httpProxyCpuUs: httpProxyCpu.sat,
    p50AddedOverHttpProxy,
    p50AddedMs,
    httpProxyP50AddedMs,
    sidecarRssUnderLoadBytes: sidecarRssUnderLoad,
    h2: r.h2,
  };
  return { lines: out, json, figures };
}

process.on('exit', killAllChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAllChildren();
    process.exit(130);
  });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    killAllChildren();
    process.exit(1);
  },
);

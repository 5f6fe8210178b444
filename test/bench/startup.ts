/**
 * Start-to-ready and idle RSS (issue 15), each against its peer in the same run:
 *   - `sts-sidecar run` as the image starts it (the ENTRYPOINT's node flags), one eager route,
 *     the bench STS stub: spawn to the first 200 from /readyz (the first exchange done), then
 *     its resident set after BENCH_IDLE_MS (1000) of idle;
 *   - a bare `node` http server: spawn to its first answer, then its resident set the same way.
 * Rounds alternate the two (BENCH_STARTUP_ROUNDS, 3); the report takes medians.
 *
 * BENCH_CLI_ENTRIES compares entry files of the CLI in the same rounds: `name=path,...`, paths
 * relative to the package root, e.g.
 * `modules=dist/src/cli/main.js,bundle=dist/bundle/sts-sidecar.mjs` (scripts/bundle.mjs). The
 * first is the `sidecar` row of the table; each round starts them in a rotated order.
 * With BENCH_STARTUP_LOAD_MS > 0 (default 0) each sidecar, once its idle RSS is read, also takes
 * that long of load at BENCH_CONNECTIONS (50) through its route to an upstream in this process:
 * its highest RSS under the load (sampled every 100 ms) is the `loadRssBytes` of the sample.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENTRYPOINT_NODE_FLAGS } from '../../src/cli/runtime-flags.js';
import { LOAD_PATH } from './ipc.js';
import { runLoad } from './load.js';
import { closeServer, listenLoopback } from './servers/listen.js';

export interface StartupSample {
  readonly readyMs: number;
  readonly idleRssBytes: number;
  /** The private part of it (RssAnon); the rest is mostly node's own binary mapped from disk (RssFile). */
  readonly idleRssAnonBytes: number;
  /** CPU time (user + system) the process had used when it was first ready: steadier than readyMs on a shared machine. */
  readonly readyCpuMs: number;
  /** Highest RSS under BENCH_STARTUP_LOAD_MS of load (NaN when not measured). */
  readonly loadRssBytes: number;
}

export interface StartupResult {
  /** The first entry's samples. */
  readonly sidecar: StartupSample[];
  readonly bareNode: StartupSample[];
  /** Every entry file measured (BENCH_CLI_ENTRIES), in the same rounds. */
  readonly entries: Array<{ readonly name: string; readonly file: string; readonly samples: StartupSample[] }>;
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * BENCH_CLI_ENTRIES (`name=path,...`, relative to the package root). Default: the bundle the
 * image runs first (the issue table's row), then tsc's output module by module (the npm bin).
 */
export function cliEntries(spec = process.env['BENCH_CLI_ENTRIES'] ?? 'image=dist/bundle/sts-sidecar.mjs,modules=dist/src/cli/main.js'): Array<{ name: string; file: string }> {
  return spec
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)
    .map((e) => {
      const [name, path] = e.includes('=') ? [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)] : [e, e];
      return { name, file: isAbsolute(path) ? path : join(ROOT, path) };
    });
}
const BARE_SERVER = "require('node:http').createServer((q, r) => r.end('ok')).listen(Number(process.argv[1]), '127.0.0.1')";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** One GET; resolves with the status, or 0 when nothing listens yet. */
function probe(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** CPU time (user + system) another process has used so far, ms (Linux /proc, clock ticks of 10 ms). */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Resident set of another process now (Linux /proc), bytes: all of it, and its anonymous (private) part. */
export function rssOf(pid: number): { rss: number; anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s*(\\d+)`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon') };
}

/** The load phase: BENCH_STARTUP_LOAD_MS of requests to `origin`, the child's highest RSS meanwhile. */
async function loadRss(pid: number, origin: string, loadMs: number): Promise<number> {
  let peak = 0;
  const poll = setInterval(() => {
    peak = Math.max(peak, rssOf(pid).rss);
  }, 100);
  try {
    const r = await runLoad({ origin, path: LOAD_PATH, connections: Number(process.env['BENCH_CONNECTIONS'] ?? 50), warmupMs: 0, durationMs: loadMs });
    if (r.requests === 0 || r.non2xx > 0) throw new Error(`load through ${origin}: ${r.requests} requests, ${r.non2xx} not 2xx`);
  } finally {
    clearInterval(poll);
  }
  return Math.max(peak, rssOf(pid).rss);
}

async function measure(args: string[], port: number, path: string, idleMs: number, load?: { origin: string; ms: number }): Promise<StartupSample> {
  const started = process.hrtime.bigint();
  const child: ChildProcess = spawn(process.execPath, args, { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      if ((await probe(port, path)) === 200) break;
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${args.join(' ')}: never ready on port ${port}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    const readyMs = Number(process.hrtime.bigint() - started) / 1e6;
    const readyCpuMs = cpuMsOf(child.pid!);
    await new Promise((r) => setTimeout(r, idleMs));
    const { rss, anon } = rssOf(child.pid!);
    const loadRssBytes = load ? await loadRss(child.pid!, load.origin, load.ms) : NaN;
    return { readyMs, idleRssBytes: rss, idleRssAnonBytes: anon, readyCpuMs, loadRssBytes };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

export async function runStartupBench(options: { stsTokenUrl: string; upstreamUrl: string; dir: string; rounds: number; idleMs: number; log: (m: string) => void }): Promise<StartupResult> {
  const entries = cliEntries().map((e) => ({ ...e, samples: [] as StartupSample[] }));
  const result: StartupResult = { sidecar: entries[0]!.samples, bareNode: [], entries };
  const loadMs = Number(process.env['BENCH_STARTUP_LOAD_MS'] ?? 0);
  const body = Buffer.from('hello from the upstream\n');
  const upstream = loadMs > 0 ? createServer((_req, res) => res.writeHead(200, { 'content-length': body.length }).end(body)) : undefined;
  const upstreamUrl = upstream ? `http://127.0.0.1:${await listenLoopback(upstream)}` : options.upstreamUrl;
  try {
    for (let round = 0; round < options.rounds; round++) await startupRound(round, entries, result, { ...options, upstreamUrl, loadMs });
  } finally {
    if (upstream) await closeServer(upstream);
  }
  return result;
}

async function startupRound(
  round: number,
  entries: StartupResult['entries'],
  result: StartupResult,
  options: { stsTokenUrl: string; upstreamUrl: string; dir: string; idleMs: number; loadMs: number; log: (m: string) => void },
): Promise<void> {
  {
    const adminPort = await freePort();
    const routePort = await freePort();
    const load = options.loadMs > 0 ? { origin: `http://127.0.0.1:${routePort}`, ms: options.loadMs } : undefined;
    const config = join(options.dir, `startup-${round}.yaml`);
    writeFileSync(
      config,
      [
        `admin: { listen: 127.0.0.1:${adminPort} }`,
        'proxy: { listen: 127.0.0.1:0 }',
        'subjectToken: { value: iamtheeggman, type: urn:ietf:params:oauth:token-type:access_token }',
        `sts: { url: ${options.stsTokenUrl} }`,
        'routes:',
        `  - { name: eager, listen: 127.0.0.1:${routePort}, upstream: ${options.upstreamUrl}, audience: bench }`,
        '',
      ].join('\n'),
    );
    const flags = process.env['BENCH_SIDECAR_FLAGS'] === '0' ? [] : ENTRYPOINT_NODE_FLAGS;
    const parts: string[] = [];
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[(i + round) % entries.length]!;
      const s = await measure([...flags, entry.file, 'run', '--config', config], adminPort, '/readyz', options.idleMs, load);
      entry.samples.push(s);
      const underLoad = load ? `, under load ${(s.loadRssBytes / 1048576).toFixed(1)} MB` : '';
      parts.push(`${entries.length > 1 ? entry.name : 'sidecar'} ready in ${s.readyMs.toFixed(0)} ms, idle RSS ${(s.idleRssBytes / 1048576).toFixed(1)} MB${underLoad}`);
    }
    const barePort = await freePort();
    const b = await measure(['-e', BARE_SERVER, String(barePort)], barePort, '/', options.idleMs);
    result.bareNode.push(b);
    options.log(`start-up round ${round + 1}: ${parts.join('; ')}; bare node ${b.readyMs.toFixed(0)} ms, ${(b.idleRssBytes / 1048576).toFixed(1)} MB`);
  }
}

/** One row per entry file (medians of the rounds), when BENCH_CLI_ENTRIES names more than one. */
export function startupEntriesReport(result: StartupResult): string[] {
  if (result.entries.length < 2) return [];
  const bareMs = median(result.bareNode.map((s) => s.readyMs));
  const bareRss = median(result.bareNode.map((s) => s.idleRssBytes));
  const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '-');
  const rows = result.entries.map((e) => {
    const ready = median(e.samples.map((s) => s.readyMs));
    const rss = median(e.samples.map((s) => s.idleRssBytes));
    return [
      e.name,
      f(ready),
      `+${f(ready - bareMs)}`,
      f(median(e.samples.map((s) => s.readyCpuMs))),
      f(rss / 1048576, 1),
      f(median(e.samples.map((s) => s.idleRssAnonBytes)) / 1048576, 1),
      f(median(e.samples.map((s) => s.loadRssBytes)) / 1048576, 1),
      e.samples.map((s) => `${f(s.readyMs)}/${f(s.idleRssBytes / 1048576, 1)}`).join(' '),
    ];
  });
  rows.push(['bare node http server', f(bareMs), '', f(median(result.bareNode.map((s) => s.readyCpuMs))), f(bareRss / 1048576, 1), f(median(result.bareNode.map((s) => s.idleRssAnonBytes)) / 1048576, 1), '', '']);
  const header = ['entry (start-up part, medians)', 'ready ms', 'over bare', 'CPU ms to ready', 'idle RSS MB', 'anon MB', 'RSS under load MB', 'per round ms/MB'];
  const text = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...text.map((r) => r[i]!.length)));
  return ['', ...text.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))];
}

export function median(values: readonly number[]): number {
  const sorted = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

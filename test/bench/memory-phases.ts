/**
 * Where the sidecar's memory goes (issue 15): `process.memoryUsage()` after each phase of
 * `sts-sidecar run` in a fresh child (servers/phases.ts): bare node, the modules `run`
 * imports, the config loaded, the first exchange done, one proxied request (undici's parser
 * instantiated), under 50 connections, and idle after the load; each dependency imported
 * alone in its own process; and a heap snapshot of the idle sidecar summarised by constructor.
 *
 *   node dist/test/bench/memory-phases.js [variant ...]
 *
 * Two variants always run: `as shipped` (the image's ENTRYPOINT flags and the CLI's run-time
 * flags, src/cli/runtime-flags.ts) and `node defaults`. More: `name=--flag,--flag` (node flags
 * for the child, `env:NAME=VALUE` sets a variable), e.g. `semi2=--max-semi-space-size=2`. Each variant also reports
 * req/s and CPU µs per request under the load, so a flag that trades speed for memory shows.
 * Env: PHASES_LOAD_MS (5000), PHASES_CONNECTIONS (50), PHASES_SNAPSHOT=0 skips the snapshot.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENTRYPOINT_NODE_FLAGS } from '../../src/cli/runtime-flags.js';
import { summarizeHeapSnapshot } from './heap-summary.js';
import { LOAD_PATH } from './ipc.js';
import { runLoad } from './load.js';
import { fmt, mb, table } from './report.js';
import { closeServer, listenLoopback } from './servers/listen.js';
import { startStsStub } from './sts-stub.js';

const LOAD_MS = Number(process.env['PHASES_LOAD_MS'] ?? 5000);
const CONNECTIONS = Number(process.env['PHASES_CONNECTIONS'] ?? 50);
const log = (msg: string) => process.stderr.write(`[phases] ${msg}\n`);

type Sample = NodeJS.MemoryUsage & { peakRssBytes: number; cpu?: NodeJS.CpuUsage };

export interface PhaseRow {
  readonly phase: string;
  readonly sample: Sample;
}

export interface VariantResult {
  readonly name: string;
  readonly flags: readonly string[];
  readonly phases: PhaseRow[];
  readonly rps: number;
  readonly cpuUsPerRequest: number;
  readonly p50Us: number;
  readonly modules: Record<string, number>;
}

function child(flags: readonly string[]): Promise<{ call: (op: string, arg?: string) => Promise<unknown>; proc: ChildProcess }> {
  const script = fileURLToPath(new URL('./servers/phases.js', import.meta.url));
  const env = { ...process.env };
  for (const f of flags) if (f.startsWith('env:')) env[f.slice(4).split('=', 1)[0]!] = f.slice(4).split('=').slice(1).join('=');
  const nodeFlags = flags.filter((f) => !f.startsWith('env:'));
  const proc = fork(script, [], { env, execArgv: ['--expose-gc', ...nodeFlags], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map<number, (m: { ok: boolean; value?: unknown; error?: string }) => void>();
  let next = 1;
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`phases child exited (${code})`)));
    proc.on('exit', () => {
      for (const settle of pending.values()) settle({ ok: false, error: 'phases child exited' });
    });
    proc.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: string }) => {
      if (m.id === 0) {
        resolve({
          proc,
          call: (op, arg) =>
            new Promise((res, rej) => {
              const id = next++;
              pending.set(id, (r) => (r.ok ? res(r.value) : rej(new Error(r.error))));
              proc.send({ id, op, arg });
            }),
        });
        return;
      }
      pending.get(m.id)?.(m);
      pending.delete(m.id);
    });
  });
}

/** Loaded CommonJS files grouped by package (node_modules/<pkg>), plus the count of the rest. */
function modulesByPackage(files: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of files) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f);
    const key = m ? m[1]! : 'other';
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

async function runVariant(name: string, flags: readonly string[], configPath: string, snapshotPath: string | undefined): Promise<VariantResult> {
  const { call, proc } = await child(flags);
  const phases: PhaseRow[] = [];
  const sample = async (phase: string, op = 'sample') => phases.push({ phase, sample: (await call(op)) as Sample });
  try {
    await sample('bare node (child started)');
    phases.push({ phase: 'modules of `run` imported', sample: (await call('modules')) as Sample });
    phases.push({ phase: 'config loaded (YAML, schema)', sample: (await call('config', configPath)) as Sample });
    const started = (await call('start')) as { routeUrls: Record<string, string> };
    await sample('started, first exchange done');
    const origin = started.routeUrls['bench']!;
    const first = await fetch(`${origin}${LOAD_PATH}`);
    await first.text();
    await sample('after the first proxied request');
    let peak: Sample | undefined;
    let cpuFrom: NodeJS.CpuUsage | undefined;
    let cpuTo: NodeJS.CpuUsage | undefined;
    const poll = setInterval(() => {
      void (call('sample-nogc') as Promise<Sample>).then((s) => {
        if (!peak || s.rss > peak.rss) peak = s;
      });
    }, 250);
    const load = await runLoad({
      origin,
      path: LOAD_PATH,
      connections: CONNECTIONS,
      warmupMs: 1000,
      durationMs: LOAD_MS,
      onWindowStart: async () => {
        cpuFrom = ((await call('sample-nogc')) as Sample).cpu;
      },
      onWindowEnd: async () => {
        cpuTo = ((await call('sample-nogc')) as Sample).cpu;
      },
    });
    clearInterval(poll);
    if (peak) phases.push({ phase: `under ${CONNECTIONS} connections (highest sample, no gc)`, sample: peak });
    await sample(`idle after the load (gc)`);
    if (snapshotPath) await call('snapshot', snapshotPath);
    const modules = modulesByPackage((await call('modules-list')) as string[]);
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    await call('stop');
    await exited; // a --cpu-prof profile is written as the child exits
    const cpuUs = cpuFrom && cpuTo ? cpuTo.user - cpuFrom.user + cpuTo.system - cpuFrom.system : NaN;
    return { name, flags, phases, rps: load.rps, cpuUsPerRequest: cpuUs / load.requests, p50Us: load.latency.p50Us, modules };
  } finally {
    proc.kill('SIGKILL');
  }
}

/** RSS / heap of a fresh `node` that imports one package (or nothing), after a gc. */
export function importAlone(specifier: string | undefined, cwd: string): Sample {
  const code =
    (specifier ? `await import(${JSON.stringify(specifier)});` : '') +
    'await new Promise((r) => setTimeout(r, 100)); gc(); const u = process.memoryUsage(); console.log(JSON.stringify(u));';
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { cwd, encoding: 'utf8' });
  return { ...(JSON.parse(out) as NodeJS.MemoryUsage), peakRssBytes: 0 };
}

export async function measurePhases(variants: ReadonlyArray<{ name: string; flags: string[] }>, withSnapshot: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'sts-sidecar-phases-'));
  const sts = await startStsStub();
  const body = Buffer.from('hello from the upstream\n');
  const upstream = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  upstream.keepAliveTimeout = 60_000;
  const upstreamPort = await listenLoopback(upstream);
  const configPath = join(dir, 'sidecar.yaml');
  writeFileSync(
    configPath,
    [
      'proxy: { listen: 127.0.0.1:0 }',
      'admin: { listen: 127.0.0.1:0 }',
      'log: { level: warn }',
      'subjectToken: { value: iamtheeggman, type: urn:ietf:params:oauth:token-type:access_token }',
      `sts: { url: ${sts.tokenUrl} }`,
      'routes:',
      `  - { name: bench, listen: 127.0.0.1:0, upstream: http://127.0.0.1:${upstreamPort}, audience: bench }`,
      '',
    ].join('\n'),
  );
  try {
    const results: VariantResult[] = [];
    for (const v of variants) {
      log(`variant ${v.name} ${v.flags.join(' ')}`);
      results.push(await runVariant(v.name, v.flags, configPath, withSnapshot && results.length === 0 ? join(dir, 'idle.heapsnapshot') : undefined));
    }
    const heap = withSnapshot ? summarizeHeapSnapshot(join(dir, 'idle.heapsnapshot')) : undefined;
    return { results, heap };
  } finally {
    await closeServer(upstream);
    await sts.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const MiB = (n: number) => fmt(n / 1048576, 1);

export function phasesReport(results: VariantResult[], heap: ReturnType<typeof summarizeHeapSnapshot> | undefined, alone: Array<[string, Sample]>): string {
  const out: string[] = [];
  for (const r of results) {
    out.push(`Variant ${r.name}${r.flags.length ? ` (${r.flags.join(' ')})` : ''}: ${fmt(r.rps)} req/s, ${fmt(r.cpuUsPerRequest, 1)} µs CPU/req, p50 ${fmt(r.p50Us, 0)} µs at ${CONNECTIONS} connections`);
    out.push(
      table(
        ['phase', 'rss MB', 'heapUsed MB', 'heapTotal MB', 'external MB', 'arrayBuffers MB'],
        r.phases.map((p) => [p.phase, MiB(p.sample.rss), MiB(p.sample.heapUsed), MiB(p.sample.heapTotal), MiB(p.sample.external), MiB(p.sample.arrayBuffers)]),
      ),
    );
    out.push(`CommonJS files loaded, by package: ${Object.entries(r.modules).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    out.push('');
  }
  if (alone.length) {
    const bare = alone[0]![1];
    out.push('Each dependency imported alone in a fresh node (after gc)');
    out.push(table(['import', 'rss MB', '+rss over bare MB', 'heapUsed MB'], alone.map(([n, s]) => [n, MiB(s.rss), MiB(s.rss - bare.rss), MiB(s.heapUsed)])));
    out.push('');
  }
  if (heap) {
    out.push(`Idle heap snapshot: ${mb(heap.totalBytes)} of self size; top groups`);
    out.push(table(['constructor / kind', 'count', 'self MB'], heap.groups.map((g) => [g.name, fmt(g.count), MiB(g.selfBytes)])));
  }
  return out.join('\n');
}

const isMain = process.argv[1] === fileURLToPath(import.meta.url);
if (isMain) {
  const variants = [
    { name: 'as shipped', flags: [...ENTRYPOINT_NODE_FLAGS, 'env:PHASES_RUNTIME_FLAGS=1'] },
    { name: 'node defaults', flags: [] as string[] },
  ];
  for (const arg of process.argv.slice(2)) {
    const [name, flags = ''] = arg.split('=', 2);
    const rest = arg.slice(name!.length + 1);
    variants.push({ name: name!, flags: (rest || flags).split(',').filter(Boolean) });
  }
  const cwd = fileURLToPath(new URL('../../../', import.meta.url));
  const alone: Array<[string, Sample]> = [['(bare node)', importAlone(undefined, cwd)]];
  for (const dep of ['undici', 'pino', 'prom-client', 'zod', 'yaml', 'jose']) alone.push([dep, importAlone(dep, cwd)]);
  const { results, heap } = await measurePhases(variants, process.env['PHASES_SNAPSHOT'] !== '0');
  console.log(phasesReport(results, heap, alone));
  console.log(`PHASES_RESULT ${JSON.stringify({ results, alone: Object.fromEntries(alone), heap })}`);
}

/**
 * The bench's share of issue 10: a large run of the HTTP-front fuzz (test/helpers/fuzz.ts, the
 * same generator and invariant as test/fuzz-front.test.ts, 200,000 requests by default), and a
 * soak under mixed load that prints the sidecar's RSS and open descriptors at its start,
 * middle and end, and once the load is gone. The sidecar runs in its own process
 * (servers/fuzz-sidecar.ts), so the figures are its own.
 *
 * Soak load, all at once: fuzz lanes (the four ways in, malformed requests included), lanes of
 * well-formed requests on every way in, idle connections that never send a byte, slowloris
 * clients (a header line a second, never done), slow uploads (100 bytes a second), and CONNECT
 * tunnels left idle. A connection the sidecar closes is counted and opened again a second later,
 * so the pressure stays; those counts show whether its timeouts act.
 *
 * Knobs (env): BENCH_FUZZ_COUNT (200000), BENCH_FUZZ_LANES (16), FUZZ_SEED, BENCH_SOAK_SECONDS
 * (75), BENCH_SOAK_IDLE (200), BENCH_SOAK_SLOW (50 slowloris + 50 slow uploads),
 * BENCH_SOAK_TUNNELS (50).
 */
import { connect, type Socket } from 'node:net';
import { describeViolations, envCount, fuzzSeed, registerShared, runCleanLoad, runFuzz, startFuzzWorld, steadyUsage, type FuzzRunStats, type FuzzWorld, type ProcessUsage } from '../helpers/fuzz.js';
import { startServerChild, type ServerChild } from './children.js';

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

export const FUZZ_SOAK_SETTINGS = {
  fuzzCount: envCount('BENCH_FUZZ_COUNT', 200_000),
  fuzzLanes: envCount('BENCH_FUZZ_LANES', 16),
  soakSeconds: envCount('BENCH_SOAK_SECONDS', 75),
  idle: envCount('BENCH_SOAK_IDLE', 200),
  slow: envCount('BENCH_SOAK_SLOW', 50),
  tunnels: envCount('BENCH_SOAK_TUNNELS', 50),
};

export interface BenchFuzzWorld {
  readonly world: FuzzWorld;
  readonly child: ServerChild;
}

/** The fuzz topology with the sidecar in a child process. */
export async function startBenchFuzzWorld(): Promise<BenchFuzzWorld> {
  let child: ServerChild | undefined;
  const world = await startFuzzWorld(async (config, stsPort) => {
    const c = await startServerChild('fuzz-sidecar', { config, stsPort });
    child = c;
    const routePorts: Record<string, number> = {};
    for (const [key, value] of Object.entries(c.info)) if (key.startsWith('route:')) routePorts[key.slice(6)] = Number(value);
    return {
      proxyPort: Number(new URL(String(c.info['url'])).port),
      routePorts,
      usage: async () => {
        const s = await c.stats();
        // The bench reports RSS and descriptors of its child; live memory is the in-process test's check.
        return { rssBytes: s.rssBytes, openFds: s.openFds, liveBytes: 0 };
      },
      close: () => c.stop(),
    };
  });
  return { world, child: child! };
}

export interface FuzzBenchResult {
  readonly stats: FuzzRunStats;
  readonly violations: Record<string, number>;
  readonly violationLines: string[];
  readonly before: ProcessUsage;
  readonly after: ProcessUsage;
}

const violationCounts = (world: FuzzWorld) => Object.fromEntries([...world.checker.summary().violations].map(([k, v]) => [k, v.count]));

export async function runFuzzBench(world: FuzzWorld, seed: number): Promise<FuzzBenchResult> {
  const { fuzzCount, fuzzLanes } = FUZZ_SOAK_SETTINGS;
  log(`fuzz: seed ${seed}, ${fuzzCount} requests over ${fuzzLanes} connections at a time (FUZZ_SEED=${seed} BENCH_FUZZ_COUNT=${fuzzCount} to rerun)`);
  await runFuzz(world, { seed, count: 500, lanes: 5, firstSession: 10_000_000, responseTimeoutMs: 1000 });
  const before = await steadyUsage(world);
  let reported = 0;
  const stats = await runFuzz(world, {
    seed,
    count: fuzzCount,
    lanes: fuzzLanes,
    responseTimeoutMs: 1000,
    onProgress: (sent) => {
      if (sent - reported >= 20_000) {
        reported = sent;
        log(`fuzz: ${sent} sent`);
      }
    },
  });
  const after = await steadyUsage(world, before.openFds);
  return { stats, violations: violationCounts(world), violationLines: describeViolations(world.checker.summary(), seed), before, after };
}

/**
 * Keeps `n` connections of one kind open: `open` sets one up (and starts whatever it trickles);
 * one the sidecar closes is counted and replaced a second later, until stop().
 */
function hold(n: number, open: (slot: number) => Promise<Socket | undefined>): { closedBySidecar: () => number; stop: () => void } {
  let stopped = false;
  let closed = 0;
  const live = new Set<Socket>();
  const slot = async (i: number) => {
    while (!stopped) {
      const socket = await open(i);
      if (socket) {
        live.add(socket);
        await new Promise<void>((resolve) => socket.once('close', () => resolve()));
        live.delete(socket);
        if (!stopped) closed += 1;
      }
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  };
  for (let i = 0; i < n; i++) void slot(i);
  return {
    closedBySidecar: () => closed,
    stop: () => {
      stopped = true;
      for (const s of live) s.destroy();
    },
  };
}

function tcp(port: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => resolve(socket));
    socket.once('error', () => resolve(undefined));
    socket.on('error', () => undefined);
    socket.resume();
  });
}

/** Writes `next()` every second until the socket closes. */
function trickle(socket: Socket, first: string, next: () => string): Socket {
  socket.write(first);
  const timer = setInterval(() => socket.write(next()), 1000);
  socket.once('close', () => clearInterval(timer));
  return socket;
}

export interface SoakFigure {
  readonly phase: string;
  readonly atSeconds: number;
  readonly rssBytes: number;
  readonly openFds: number;
}

export interface SoakResult {
  readonly seconds: number;
  readonly figures: SoakFigure[];
  readonly fuzzSent: number;
  readonly cleanAnswers: Record<string, number>;
  readonly held: Record<string, { readonly count: number; readonly closedBySidecar: number }>;
  readonly violations: Record<string, number>;
}

export async function runSoak(world: FuzzWorld, seed: number): Promise<SoakResult> {
  const { soakSeconds, idle, slow, tunnels } = FUZZ_SOAK_SETTINGS;
  const { proxy } = world.ports;
  const dedicated = Object.values(world.sidecar.routePorts);
  const violationsBefore = violationCounts(world);
  log(`soak: ${soakSeconds} s; ${idle} idle connections, ${slow} slowloris, ${slow} slow uploads, ${tunnels} idle CONNECT tunnels, fuzz and well-formed lanes`);
  const started = Date.now();
  const figures: SoakFigure[] = [];
  const figure = async (phase: string, usage?: ProcessUsage) => {
    const u = usage ?? (await world.sidecar.usage());
    figures.push({ phase, atSeconds: (Date.now() - started) / 1000, rssBytes: u.rssBytes, openFds: u.openFds });
    log(`soak ${phase}: RSS ${(u.rssBytes / 1048576).toFixed(1)} MiB, ${u.openFds} open descriptors`);
  };
  await figure('start', await steadyUsage(world));

  let stopping = false;
  const stop = () => stopping;
  let opened = 0;
  const fuzz = runFuzz(world, { seed, count: Number.MAX_SAFE_INTEGER, lanes: 6, firstSession: 20_000_000, responseTimeoutMs: 1000, stop });
  const clean = runCleanLoad(world, 6, stop);
  const holders = {
    idle: { count: idle, h: hold(idle, (i) => tcp(i % 4 === 0 && dedicated.length ? dedicated[i % dedicated.length]! : proxy)) },
    slowloris: {
      count: slow,
      h: hold(slow, async (i) => {
        const s = await tcp(proxy);
        const head = `GET /api/slow HTTP/1.1\r\nHost: orders.internal\r\nX-Fuzz-Id: soak-slowloris-${i}-${++opened}\r\n`;
        registerShared(world, /X-Fuzz-Id: (\S+)/.exec(head)![1]!, 'GET', '/api/slow', 'orders.internal', head);
        return s && trickle(s, head, () => 'X-Slow: 1\r\n');
      }),
    },
    slowUpload: {
      count: slow,
      h: hold(slow, async (i) => {
        const s = await tcp(proxy);
        const head = `POST /api/upload HTTP/1.1\r\nHost: orders.internal\r\nX-Fuzz-Id: soak-upload-${i}-${++opened}\r\nContent-Length: 10000000\r\n\r\n`;
        registerShared(world, /X-Fuzz-Id: (\S+)/.exec(head)![1]!, 'POST', '/api/upload', 'orders.internal', head);
        return s && trickle(s, head, () => 'x'.repeat(100));
      }),
    },
    idleTunnel: {
      count: tunnels,
      h: hold(tunnels, async () => {
        const s = await tcp(proxy);
        s?.write('CONNECT orders.internal:80 HTTP/1.1\r\nHost: orders.internal:80\r\n\r\n');
        return s;
      }),
    },
  };

  const half = (soakSeconds * 1000) / 2;
  await new Promise((resolve) => setTimeout(resolve, half));
  await figure('middle');
  await new Promise((resolve) => setTimeout(resolve, half));
  await figure('end');

  stopping = true;
  for (const { h } of Object.values(holders)) h.stop();
  const [fuzzStats, cleanAnswers] = await Promise.all([fuzz, clean]);
  await figure('after', await steadyUsage(world, figures[0]!.openFds));
  return {
    seconds: soakSeconds,
    figures,
    fuzzSent: fuzzStats.sent,
    cleanAnswers,
    held: Object.fromEntries(Object.entries(holders).map(([k, { count, h }]) => [k, { count, closedBySidecar: h.closedBySidecar() }])),
    violations: Object.fromEntries(Object.entries(violationCounts(world)).map(([k, v]) => [k, v - (violationsBefore[k] ?? 0)]).filter(([, v]) => v !== 0)),
  };
}

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;

/** The report's lines for the fuzz run and the soak. */
export function fuzzSoakReport(seed: number, fuzz: FuzzBenchResult | undefined, soak: SoakResult | undefined): string[] {
  const out: string[] = [];
  if (fuzz) {
    const s = fuzz.stats;
    out.push('');
    out.push(`HTTP-front fuzz (issue 10): seed ${seed}, ${s.sent} requests in ${s.sessions} sessions, ${s.seconds.toFixed(1)} s (${(s.sent / s.seconds).toFixed(0)} req/s), sidecar in its own process`);
    out.push(`  by way in ${JSON.stringify(s.sentByMode)}; answers ${JSON.stringify(s.outcomes)}; set-up failures ${JSON.stringify(s.setupFailures)}`);
    out.push(`  sidecar before / after: RSS ${mib(fuzz.before.rssBytes)} / ${mib(fuzz.after.rssBytes)}, descriptors ${fuzz.before.openFds} / ${fuzz.after.openFds}`);
    out.push(Object.keys(fuzz.violations).length ? `  INVARIANT VIOLATIONS ${JSON.stringify(fuzz.violations)} (first examples below)` : '  invariant held for every request');
    for (const line of fuzz.violationLines.slice(0, 40)) out.push(`  ${line}`);
  }
  if (soak) {
    out.push('');
    out.push(`Soak (issue 10): ${soak.seconds} s of mixed load on the sidecar process`);
    out.push('  phase    at (s)   RSS          open descriptors');
    for (const f of soak.figures) out.push(`  ${f.phase.padEnd(8)} ${f.atSeconds.toFixed(1).padStart(6)}   ${mib(f.rssBytes).padEnd(12)} ${f.openFds}`);
    out.push(`  fuzz requests ${soak.fuzzSent}; well-formed answers ${JSON.stringify(soak.cleanAnswers)}`);
    out.push(`  held connections (count / closed by the sidecar and reopened): ${Object.entries(soak.held).map(([k, v]) => `${k} ${v.count}/${v.closedBySidecar}`).join(', ')}`);
    out.push(Object.keys(soak.violations).length ? `  invariant violations during the soak: ${JSON.stringify(soak.violations)}` : '  invariant held for every request');
  }
  return out;
}

export { fuzzSeed };

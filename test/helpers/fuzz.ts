/**
 * The seeded fuzz of the sidecar's HTTP front (issue 10): a topology of real loopback servers
 * (an STS, one upstream per route, a decoy no route names, an interception CA made by
 * Debian's `openssl`), a sidecar in front of them, and lanes of raw connections that send
 * generated requests through the four ways in: the shared listener by Host and a route's
 * dedicated listener (reverse), absolute-form (forward proxy), CONNECT with plain HTTP inside,
 * and CONNECT with TLS the sidecar intercepts. The test (test/fuzz-front.test.ts) and the bench
 * (test/bench/fuzz-soak.ts) both drive it; the sidecar runs in the same process (the test) or
 * in a child (the bench), behind the FuzzSidecar interface.
 *
 * Replay: FUZZ_SEED fixes the seed, FUZZ_COUNT the number of requests, FUZZ_REPLAY=<session>.<i>
 * sends just that request (its session's CONNECT or listener first), FUZZ_REPLAY=<s>.<i>+<s>.<j>
 * several of one session in that order on one connection.
 */
import { execFile } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startFakeSts, type FakeSts } from './fake-sts.js';
import { TOKEN_TYPE_ACCESS } from './harness.js';
import { tempDir, type TempDir } from './loopback.js';
import { connectTcp, openTunnel, type RawConnection, type ResponseResult } from './fuzz-client.js';
import { FuzzChecker, type CheckSummary } from './fuzz-check.js';
import type { ProcessUsage } from './fuzz-usage.js';
import {
  connectPreamble,
  FUZZ_ROUTES,
  generateRequest,
  generateSession,
  type FuzzMode,
  type FuzzPorts,
  type FuzzRequest,
  type FuzzRouteSpec,
  type FuzzSession,
} from './fuzz-generate.js';

const execFileAsync = promisify(execFile);

/** Where the sidecar listens and what it costs; in-process for the test, a child for the bench. */
export interface FuzzSidecar {
  readonly proxyPort: number;
  /** Dedicated listener port by route name. */
  readonly routePorts: Readonly<Record<string, number>>;
  /** Resident set size (bytes) and open file descriptors of the sidecar's process. */
  usage(): Promise<ProcessUsage>;
  close(): Promise<void>;
}

/** Starts the sidecar with `config`; `stsPort` is the STS's, for usage() to leave out. */
export type SidecarStarter = (config: Record<string, unknown>, stsPort: number) => Promise<FuzzSidecar>;

export interface FuzzWorld {
  readonly sidecar: FuzzSidecar;
  readonly ports: FuzzPorts;
  readonly caPem: string;
  readonly checker: FuzzChecker;
  readonly sts: FakeSts;
  /** Closes the upstreams' idle keep-alive connections (the sidecar's pooled ones), so descriptors settle. */
  dropIdleUpstreamConnections(): void;
  /** Descriptors and clientErrors seen by upstreams (requests they could not parse). */
  readonly upstreamParseErrors: () => number;
  close(): Promise<void>;
}

/**
 * A CA as a security team or cert-manager makes it: `openssl req -x509` with the defaults of
 * Debian's openssl.cnf (subject and authority key identifiers, CA:TRUE), an EC P-256 key.
 */
export async function makeOpensslCa(dir: string): Promise<{ cert: string; key: string; pem: string }> {
  const cert = join(dir, 'interception-ca.crt');
  const key = join(dir, 'interception-ca.key');
  await execFileAsync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/O=fuzz security team/CN=fuzz interception CA',
  ]);
  return { cert, key, pem: await readFile(cert, 'utf8') };
}

const TOKEN_PREFIX = 'fuzztok';
const TOKEN_PATTERN = new RegExp(`${TOKEN_PREFIX}-\\d+-x{24}`, 'g');

/** An upstream serving one route (or none: the decoy) that reports every request it parses. */
async function startUpstream(route: FuzzRouteSpec | undefined, checker: FuzzChecker, routeOfToken: (token: string) => string | undefined, errors: { count: number }): Promise<{ server: Server; port: number }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const tokens = new Set<string>();
    const scan = (text: string) => {
      for (const m of text.matchAll(TOKEN_PATTERN)) tokens.add(routeOfToken(m[0]) ?? `unknown token ${m[0]}`);
    };
    for (const value of req.rawHeaders) scan(value);
    scan(req.url ?? '');
    const id = req.headers['x-fuzz-id'];
    checker.observe({
      route,
      id: typeof id === 'string' ? id : undefined,
      method: req.method ?? '',
      url: req.url ?? '',
      host: req.headers.host,
      tokenRoutes: [...tokens],
    });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    });
  });
  server.on('clientError', (_err, socket: Socket) => {
    errors.count += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/**
 * The sidecar configuration for the topology: five routes, the openssl CA as forward.ca.
 * `forward.unmatched: deny`: passing unmatched requests through would make the run depend on
 * this machine's DNS (route names resolve nowhere, and concurrent failing lookups can take
 * seconds each); what matters here, that no unmatched request is routed, is the same.
 */
export function fuzzSidecarConfig(stsUrl: string, upstreamPorts: Readonly<Record<string, number>>, ca: { cert: string; key: string }): Record<string, unknown> {
  return {
    log: { level: 'warn' },
    subjectToken: { value: 'fuzz-subject-token', type: TOKEN_TYPE_ACCESS },
    sts: { url: stsUrl },
    forward: { unmatched: 'deny', ca: { cert: ca.cert, key: ca.key } },
    routes: FUZZ_ROUTES.map((r) => ({
      name: r.name,
      host: r.host,
      pathPrefix: r.pathPrefix,
      upstream: `http://127.0.0.1:${upstreamPorts[r.name]}${r.base}`,
      audience: r.name,
      ...(r.listen ? { listen: '127.0.0.1:0' } : {}),
      ...(r.preserveHost ? { preserveHost: true } : {}),
      ...(r.intercept ? { intercept: true } : {}),
    })),
  };
}

export async function startFuzzWorld(startSidecar: SidecarStarter): Promise<FuzzWorld> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const close = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    const dir: TempDir = await tempDir('sts-sidecar-fuzz-');
    cleanups.push(() => dir.cleanup());
    const ca = await makeOpensslCa(dir.path);
    const sts = await startFakeSts({ prefix: TOKEN_PREFIX });
    cleanups.push(() => sts.close());
    const checker = new FuzzChecker();
    const tokenRoute = new Map<string, string>();
    const routeOfToken = (token: string) => {
      if (!tokenRoute.has(token)) {
        const i = sts.issued.indexOf(token);
        const audience = i === -1 ? undefined : sts.requests[i]?.get('audience');
        if (audience) tokenRoute.set(token, audience);
      }
      return tokenRoute.get(token);
    };
    const errors = { count: 0 };
    const servers: Server[] = [];
    const upstreamPorts: Record<string, number> = {};
    for (const route of [...FUZZ_ROUTES, undefined]) {
      const { server, port } = await startUpstream(route, checker, routeOfToken, errors);
      servers.push(server);
      upstreamPorts[route?.name ?? 'decoy'] = port;
    }
    cleanups.push(async () => {
      for (const s of servers) {
        s.closeAllConnections();
        await new Promise((resolve) => s.close(resolve));
      }
    });
    const sidecar = await startSidecar(fuzzSidecarConfig(sts.tokenUrl, upstreamPorts, ca), Number(new URL(sts.tokenUrl).port));
    cleanups.push(() => sidecar.close());
    return {
      sidecar,
      ports: { proxy: sidecar.proxyPort, decoy: upstreamPorts['decoy']! },
      caPem: ca.pem,
      checker,
      sts,
      dropIdleUpstreamConnections: () => servers.forEach((s) => s.closeIdleConnections()),
      upstreamParseErrors: () => errors.count,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface FuzzRunOptions {
  readonly seed: number;
  /** Requests to send (at least); sessions are generated until this many were written. */
  readonly count: number;
  /** Connections driven concurrently. */
  readonly lanes: number;
  /** First session index (a warm-up and the run use disjoint sessions of the same seed). */
  readonly firstSession?: number;
  /** Only this request (`session.index`, or several of one session joined by `+`), on its session's connection. */
  readonly replay?: string;
  readonly responseTimeoutMs?: number;
  /** Sessions of these modes only (e.g. a warm-up of each way in). */
  readonly modes?: readonly FuzzMode[];
  /** Called after each answered request (the bench's progress and soak figures). */
  readonly onProgress?: (sent: number) => void;
  /** Checked before each session: true ends the run (the soak runs for a time, not a count). */
  readonly stop?: () => boolean;
}

export interface FuzzRunStats {
  readonly seed: number;
  readonly sessions: number;
  readonly sent: number;
  /** Sent, per mode. */
  readonly sentByMode: Readonly<Record<string, number>>;
  /** Answers per status class ("2xx", "4xx", ...), plus "closed" (no answer) and "timeout". */
  readonly outcomes: Readonly<Record<string, number>>;
  /** Sessions whose connection could not be set up, by reason. */
  readonly setupFailures: Readonly<Record<string, number>>;
  readonly seconds: number;
}

interface LaneState {
  sent: number;
  readonly sentByMode: Record<string, number>;
  readonly outcomes: Record<string, number>;
  readonly setupFailures: Record<string, number>;
}

const bump = (record: Record<string, number>, key: string, by = 1) => {
  record[key] = (record[key] ?? 0) + by;
};

async function openSession(world: FuzzWorld, session: FuzzSession, timeoutMs: number): Promise<RawConnection | string> {
  const { sidecar } = world;
  if (session.mode === 'connect' || session.mode === 'intercept') {
    const tls = session.mode === 'intercept' ? { ca: world.caPem, servername: session.sni! } : undefined;
    const tunnel = await openTunnel(sidecar.proxyPort, connectPreamble(session), timeoutMs, tls);
    return tunnel.ok ? tunnel.connection : tunnel.why;
  }
  const port = session.listener === 'shared' ? sidecar.proxyPort : sidecar.routePorts[session.listener];
  if (port === undefined) return `no dedicated listener for ${session.listener}`;
  return (await connectTcp(port)) ?? 'connect failed';
}

function outcomeKey(r: ResponseResult): string {
  return r.kind === 'response' ? `${Math.floor(r.status / 100)}xx` : r.kind;
}

const UPGRADE_LINE = /\r\nupgrade:/i;

/** Sends the start of `req` (its head and part of its body), waits a moment, then closes the connection. */
async function hangUp(world: FuzzWorld, conn: RawConnection, req: FuzzRequest, upgradeAsked: FuzzRequest | undefined): Promise<void> {
  world.checker.sent(req, upgradeAsked);
  conn.write(req.bytes.subarray(0, req.hangUpAfter));
  await new Promise((resolve) => setTimeout(resolve, req.hangUpDelayMs ?? 0));
  conn.destroy();
}

/**
 * One session: its requests in order on one connection, reconnecting when the sidecar closes it.
 * Returns how many requests could not be sent (the connection could not be set up).
 */
async function runSession(world: FuzzWorld, session: FuzzSession, requests: readonly FuzzRequest[], state: LaneState, timeoutMs: number, onProgress?: (sent: number) => void): Promise<number> {
  let conn: RawConnection | undefined;
  let upgradeAsked: FuzzRequest | undefined;
  let i = 0;
  try {
    while (i < requests.length) {
      if (!conn) {
        const opened = await openSession(world, session, timeoutMs);
        if (typeof opened === 'string') {
          bump(state.setupFailures, `${session.mode}: ${opened}`);
          return requests.length - i;
        }
        conn = opened;
        upgradeAsked = undefined;
      }
      const first = requests[i]!;
      if (first.hangUpAfter !== undefined) {
        await hangUp(world, conn, first, upgradeAsked);
        state.sent += 1;
        bump(state.sentByMode, session.mode);
        bump(state.outcomes, 'hung up');
        i += 1;
        conn = undefined;
        continue;
      }
      // A request that asks for pipelining goes out in one write with the ones after it.
      const batch = [first];
      while (batch.at(-1)!.pipelineNext && i + batch.length < requests.length && batch.length < 4 && requests[i + batch.length]!.hangUpAfter === undefined) {
        batch.push(requests[i + batch.length]!);
      }
      for (const r of batch) {
        world.checker.sent(r, upgradeAsked);
        if (UPGRADE_LINE.test(r.bytes.toString('latin1', 0, 20_000))) upgradeAsked = r;
      }
      conn.write(Buffer.concat(batch.map((r) => r.bytes)));
      state.sent += batch.length;
      bump(state.sentByMode, session.mode, batch.length);
      let keep = true;
      for (const r of batch) {
        const answer = keep ? await conn.readResponse(r.method, timeoutMs) : ({ kind: 'closed' } as const);
        bump(state.outcomes, outcomeKey(answer));
        if (answer.kind !== 'response' || answer.close) keep = false;
      }
      i += batch.length;
      onProgress?.(state.sent);
      if (!keep) {
        conn.destroy();
        conn = undefined;
      }
    }
  } finally {
    conn?.destroy();
  }
  return 0;
}

/** Sends the generated requests over `lanes` concurrent connections; returns what happened. */
export async function runFuzz(world: FuzzWorld, options: FuzzRunOptions): Promise<FuzzRunStats> {
  const started = performance.now();
  const timeoutMs = options.responseTimeoutMs ?? 5000;
  const state: LaneState = { sent: 0, sentByMode: {}, outcomes: {}, setupFailures: {} };
  let nextSession = options.firstSession ?? 0;
  let planned = 0;
  let sessions = 0;
  const take = (): FuzzSession | undefined => {
    for (;;) {
      // The second bound ends a run in which (almost) no connection can be set up.
      if (planned >= options.count || sessions >= 2 * options.count || options.stop?.()) return undefined;
      const session = generateSession(options.seed, nextSession++, world.ports);
      if (options.modes && !options.modes.includes(session.mode)) continue;
      const n = Math.min(session.requests, options.count - planned);
      planned += n;
      sessions += 1;
      return { ...session, requests: n };
    }
  };
  if (options.replay) {
    // `s.i`, or `s.i+s.j+...`: requests of one session, in this order on one connection.
    const ids = options.replay.split('+').map((id) => id.split('.').map(Number) as [number, number]);
    const session = generateSession(options.seed, ids[0]![0], world.ports);
    const reqs = ids.map(([, r]) => generateRequest(options.seed, session, r, world.ports));
    await runSession(world, session, reqs, state, timeoutMs);
    sessions = 1;
  } else {
    const lane = async () => {
      for (let session = take(); session; session = take()) {
        const s = session;
        const requests = Array.from({ length: s.requests }, (_, i) => generateRequest(options.seed, s, i, world.ports));
        // Requests a failed set-up kept from being sent are planned again in later sessions.
        const unsent = await runSession(world, s, requests, state, timeoutMs, options.onProgress);
        planned -= unsent;
      }
    };
    await Promise.all(Array.from({ length: options.lanes }, lane));
  }
  return {
    seed: options.seed,
    sessions,
    sent: state.sent,
    sentByMode: state.sentByMode,
    outcomes: state.outcomes,
    setupFailures: state.setupFailures,
    seconds: (performance.now() - started) / 1000,
  };
}

/** FUZZ_SEED (decimal or 0x hex) or a fresh random 32-bit seed. */
export function fuzzSeed(): number {
  const text = process.env['FUZZ_SEED'];
  if (text) {
    const n = Number(text);
    if (Number.isInteger(n) && n >= 0) return n >>> 0;
    throw new Error(`FUZZ_SEED must be a non-negative integer, got "${text}"`);
  }
  return Math.floor(Math.random() * 2 ** 32);
}

export function envCount(name: string, fallback: number): number {
  const n = Number(process.env[name]);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Asks the upstreams to drop idle pooled connections, then reads the sidecar's usage every
 * 50 ms until the descriptor count is the same three times in a row and at most `limit`
 * (closes on both ends take a turn of the event loop or two), or the deadline passes.
 */
export async function steadyUsage(world: FuzzWorld, limit = Infinity, timeoutMs = 5000): Promise<ProcessUsage> {
  const deadline = Date.now() + timeoutMs;
  const readings: number[] = [];
  let usage = await world.sidecar.usage();
  while (Date.now() < deadline) {
    world.dropIdleUpstreamConnections();
    await pause(50);
    usage = await world.sidecar.usage();
    readings.push(usage.openFds);
    if (usage.openFds <= limit && readings.length >= 3 && readings.slice(-3).every((n) => n === usage.openFds)) break;
  }
  return usage;
}

export type { CheckSummary, ProcessUsage };
export { selfDescriptors, selfUsage } from './fuzz-usage.js';
export { describeViolations } from './fuzz-check.js';

/** A well-formed request on each way in, after the run: the sidecar must still answer 200 with the token. */
const PROBES: ReadonlyArray<{ readonly session: Omit<FuzzSession, 'index' | 'requests'>; readonly target: string; readonly host: string }> = [
  { session: { mode: 'reverse', listener: 'shared' }, target: '/api/probe', host: 'orders.internal' },
  { session: { mode: 'dedicated', listener: 'payments' }, target: '/v1/probe', host: 'payments.internal' },
  { session: { mode: 'dedicated', listener: 'gateway' }, target: '/probe', host: 'gw.internal' },
  { session: { mode: 'absolute', listener: 'shared' }, target: 'http://orders.internal/reports/probe', host: 'orders.internal' },
  { session: { mode: 'connect', listener: 'shared', connectTo: 'payments.internal:80' }, target: '/v1/probe', host: 'payments.internal' },
  { session: { mode: 'intercept', listener: 'shared', connectTo: 'secure.internal:443', sni: 'secure.internal' }, target: '/data/probe', host: 'secure.internal' },
];

/**
 * Registers a request a caller writes itself (the soak's slow clients) with the checker, so the
 * upstream can match it: `head` must carry `X-Fuzz-Id: <id>`. Sent on the shared listener by Host.
 */
export function registerShared(world: FuzzWorld, id: string, method: string, target: string, host: string, head: string): void {
  const session: FuzzSession = { index: -1, mode: 'reverse', listener: 'shared', requests: 1 };
  world.checker.sent({ id, session, method, target, hosts: [host], bytes: Buffer.from(head, 'latin1'), pipelineNext: false });
}

/** `count` well-formed GETs on the way in of PROBES[kind], on one connection. */
function probeSession(kind: number, count: number, tag: string): { session: FuzzSession; requests: FuzzRequest[] } {
  const probe = PROBES[kind % PROBES.length]!;
  const session: FuzzSession = { ...probe.session, index: -1, requests: count };
  const requests = Array.from({ length: count }, (_, i): FuzzRequest => {
    const id = `${tag}-${kind}-${i}`;
    return {
      id,
      session,
      method: 'GET',
      target: probe.target,
      hosts: [probe.host],
      bytes: Buffer.from(`GET ${probe.target} HTTP/1.1\r\nHost: ${probe.host}\r\nX-Fuzz-Id: ${id}\r\n\r\n`),
      pipelineNext: false,
    };
  });
  return { session, requests };
}

/**
 * Well-formed requests on every way in, `lanes` connections at a time, sessions of 50, until
 * `stop()`: the steady traffic of a soak. Returns the answers per status class.
 */
export async function runCleanLoad(world: FuzzWorld, lanes: number, stop: () => boolean): Promise<Record<string, number>> {
  const state: LaneState = { sent: 0, sentByMode: {}, outcomes: {}, setupFailures: {} };
  let next = 0;
  const lane = async () => {
    while (!stop()) {
      const kind = next++;
      const { session, requests } = probeSession(kind, 50, `clean${kind}`);
      await runSession(world, session, requests, state, 5000);
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return { ...state.outcomes, ...state.setupFailures };
}

export async function probeEveryWayIn(world: FuzzWorld): Promise<{ failed: string[] }> {
  const failed: string[] = [];
  for (const [i, probe] of PROBES.entries()) {
    const { session, requests } = probeSession(i, 1, 'probe');
    const state: LaneState = { sent: 0, sentByMode: {}, outcomes: {}, setupFailures: {} };
    await runSession(world, session, requests, state, 5000);
    if (state.outcomes['2xx'] !== 1) failed.push(`${probe.session.mode} ${probe.session.connectTo ?? probe.session.listener} ${probe.target}: ${JSON.stringify({ ...state.outcomes, ...state.setupFailures })}`);
  }
  return { failed };
}

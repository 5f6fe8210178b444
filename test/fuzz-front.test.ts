/**
 * Issue 10, "What must show": a seeded, reproducible fuzz of the HTTP front. At least 10,000
 * generated requests (FUZZ_COUNT) go through the four ways a request enters the sidecar:
 * reverse (the shared listener by Host, and a dedicated listener whose upstream has a base
 * path), absolute-form through the forward proxy, CONNECT with plain HTTP inside, and TLS the
 * sidecar intercepts with a CA made by `openssl req -x509` (forward.ca), the client trusting
 * only that CA. Methods, targets (dot-segments raw and %2e, %2f/%5c, backslashes, double
 * encoding, queries, fragments, absolute URIs, `*`), Hosts and header shapes are random.
 *
 * One invariant for every request: the token reaches an upstream only when the request, as
 * that upstream parsed it, belongs to the route the sidecar matched (test/helpers/fuzz-check.ts).
 * Then: the sidecar still answers, no token in its logs, and its descriptors and RSS come back
 * near the baseline taken after a warm-up.
 *
 * The seed is printed; FUZZ_SEED=<seed> reruns the same requests, FUZZ_REPLAY=<session>.<i>
 * sends one of them alone.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness } from './helpers/harness.js';
import { FuzzChecker, hostName, PATH_READERS, type ViolationClass } from './helpers/fuzz-check.js';
import { FUZZ_ROUTES, type FuzzMode, type FuzzRequest } from './helpers/fuzz-generate.js';
import {
  describeViolations,
  envCount,
  fuzzSeed,
  probeEveryWayIn,
  runFuzz,
  selfDescriptors,
  selfUsage,
  startFuzzWorld,
  steadyUsage,
  type FuzzSidecar,
  type FuzzWorld,
} from './helpers/fuzz.js';

/**
 * Descriptors allowed over the post-warm-up baseline once clients are gone and upstreams
 * dropped their idle pooled connections (the STS's keep-alive connections are not counted):
 * slack for a socket or two whose close is still in flight.
 */
const FD_MARGIN = 4;
/**
 * RSS growth allowed over the post-warm-up baseline. V8 keeps heap it grew into, so RSS does
 * not fall back to the byte; 96 MiB still catches what issue 10 reported (pipelining took RSS
 * from 107 to 631 MB; 10,000 idle connections added 62 MB).
 */
const RSS_MARGIN_BYTES = 96 * 1024 * 1024;
/**
 * Growth of live memory (heap plus Buffers, after a full collection) allowed over the baseline:
 * the leak check proper. RSS is checked against its own margin only where V8 gives pages back
 * (Node 20 here); Node 24 kept 133 MiB more RSS after the same run with no more live memory.
 */
const LIVE_MARGIN_BYTES = 48 * 1024 * 1024;
const RSS_IS_RETURNED = Number(process.versions.node.split('.')[0]) < 22;

/**
 * How long a lane waits for an answer before dropping the connection. Loopback answers take
 * milliseconds; a connection the sidecar spliced to an upstream after an unanswered Upgrade
 * (issue 10 item 9) may never answer. Not an assertion: a timeout only ends that connection.
 */
const RESPONSE_TIMEOUT_MS = 1000;

async function inProcessSidecar(config: Record<string, unknown>, stsPort: number): Promise<FuzzSidecar & { logs: string[]; stsPort: number }> {
  const h = await startHarness(config);
  const routePorts: Record<string, number> = {};
  for (const [name, url] of Object.entries(h.sidecar.routeUrls)) routePorts[name] = Number(new URL(url).port);
  return {
    proxyPort: Number(new URL(h.sidecar.proxyUrl).port),
    routePorts,
    logs: h.logs,
    stsPort,
    usage: async () => selfUsage([stsPort]),
    close: () => h.close(),
  };
}

/** Entries of `after` beyond those in `before` (a multiset difference). */
function newEntries(before: readonly string[], after: readonly string[]): string[] {
  const left = new Map<string, number>();
  for (const b of before) left.set(b, (left.get(b) ?? 0) + 1);
  return after.filter((a) => {
    const n = left.get(a) ?? 0;
    left.set(a, n - 1);
    return n <= 0;
  });
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

describe('fuzz of the HTTP front (issue 10)', () => {
  it('every generated request: the token reaches an upstream only for a request of the route the sidecar matched', async (t) => {
    const seed = fuzzSeed();
    const count = envCount('FUZZ_COUNT', 10_000);
    const replay = process.env['FUZZ_REPLAY'];
    t.diagnostic(`seed ${seed} (FUZZ_SEED=${seed} reruns these requests), count ${count}`);
    let logs: string[] = [];
    let stsPort = 0;
    const world: FuzzWorld = await startFuzzWorld(async (config, sts) => {
      const s = await inProcessSidecar(config, sts);
      logs = s.logs;
      stsPort = sts;
      return s;
    });
    t.after(() => world.close());

    if (replay) {
      const stats = await runFuzz(world, { seed, count: 1, lanes: 1, replay });
      t.diagnostic(`replayed ${replay}: ${JSON.stringify(stats.outcomes)} ${JSON.stringify(stats.setupFailures)}`);
      const lines = describeViolations(world.checker.summary(), seed);
      assert.equal(lines.length, 0, lines.join('\n'));
      return;
    }

    // Warm-up on sessions the run never uses: JIT, the intercepted host's leaf and the
    // upstream pools exist before the baseline is read.
    await runFuzz(world, { seed, count: 400, lanes: 5, firstSession: 10_000_000, responseTimeoutMs: RESPONSE_TIMEOUT_MS });
    const baseline = await steadyUsage(world);
    const baselineFds = selfDescriptors([stsPort]);

    const stats = await runFuzz(world, { seed, count, lanes: 10, responseTimeoutMs: RESPONSE_TIMEOUT_MS });
    const summary = world.checker.summary();
    t.diagnostic(
      `sent ${stats.sent} requests in ${stats.sessions} sessions, ${stats.seconds.toFixed(2)} s; by way in ${JSON.stringify(stats.sentByMode)}; ` +
        `answers ${JSON.stringify(stats.outcomes)}; forwarded with the token ${JSON.stringify(summary.forwardedWithToken)}; ` +
        `session set-up failures ${JSON.stringify(stats.setupFailures)}; upstreams parsed ${summary.observed}, refused ${world.upstreamParseErrors()} unparseable`,
    );
    if (summary.conflictingHostLinesWithToken) {
      t.diagnostic(`note: ${summary.conflictingHostLinesWithToken} requests with two different Host lines got the token (routed by the first; RFC 9112 3.2 wants 400)`);
    }

    // The sidecar still does its job on every way in.
    const probes = await probeEveryWayIn(world);
    const after = await steadyUsage(world, baseline.openFds + FD_MARGIN);
    if (after.openFds > baseline.openFds) t.diagnostic(`descriptors opened since the baseline: ${newEntries(baselineFds, selfDescriptors([stsPort])).join(', ')}`);
    t.diagnostic(`descriptors ${baseline.openFds} -> ${after.openFds} (margin ${FD_MARGIN}), RSS ${mb(baseline.rssBytes)} -> ${mb(after.rssBytes)} (margin ${mb(RSS_MARGIN_BYTES)}), live ${mb(baseline.liveBytes)} -> ${mb(after.liveBytes)} (margin ${mb(LIVE_MARGIN_BYTES)})`);

    const violations = describeViolations(summary, seed);
    for (const line of violations.filter((l) => !l.startsWith(' '))) t.diagnostic(line);
    assert.ok(stats.sent >= count, `only ${stats.sent} of ${count} requests were sent`);
    assert.equal(violations.length, 0, `seed ${seed}: invariant violations\n${violations.join('\n')}`);
    assert.deepEqual(probes.failed, [], `after the run, a well-formed request failed on: ${probes.failed.join('; ')}`);
    for (const mode of ['reverse', 'dedicated', 'absolute', 'connect', 'intercept']) {
      assert.ok((summary.forwardedWithToken[mode] ?? 0) > 0, `no request entering by ${mode} reached an upstream with its token: the fuzz did not cover it (${JSON.stringify(stats.setupFailures)})`);
    }
    assert.ok(!logs.some((l) => l.includes('fuzztok-')), 'a token appeared in the sidecar\'s log');
    assert.ok(after.openFds <= baseline.openFds + FD_MARGIN, `descriptors ${baseline.openFds} before, ${after.openFds} after the run; new: ${newEntries(baselineFds, selfDescriptors([stsPort])).join(', ')}`);
    assert.ok(after.liveBytes <= baseline.liveBytes + LIVE_MARGIN_BYTES, `live memory ${mb(baseline.liveBytes)} before, ${mb(after.liveBytes)} after the run`);
    if (RSS_IS_RETURNED) assert.ok(after.rssBytes <= baseline.rssBytes + RSS_MARGIN_BYTES, `RSS ${mb(baseline.rssBytes)} before, ${mb(after.rssBytes)} after the run`);
  });
});

/**
 * The checker itself, on hand-made observations: each class fires on an escape it names, and
 * lawful forms pass (a false positive would send the people fixing the sidecar after ghosts).
 */
describe('the fuzz checker (what counts as an escape)', () => {
  const route = (name: string) => FUZZ_ROUTES.find((r) => r.name === name)!;
  let n = 0;
  const request = (mode: FuzzMode, target: string, hosts: string[], extra: { connectTo?: string; listener?: 'payments' | 'gateway' } = {}): FuzzRequest => {
    const id = `${900_000 + n++}.0`;
    return {
      id,
      session: { index: 0, mode, listener: extra.listener ?? 'shared', requests: 1, ...(extra.connectTo ? { connectTo: extra.connectTo } : {}) },
      method: 'GET',
      target,
      hosts,
      bytes: Buffer.from(`GET ${target} HTTP/1.1\r\n\r\n`),
      pipelineNext: false,
    };
  };
  /** The classes flagged when `req` reached `routeName`'s upstream as `url` (method, Host) with that route's token. */
  const flagged = (req: FuzzRequest, routeName: string | undefined, url: string, options: { method?: string; host?: string; tokens?: string[] } = {}): ViolationClass[] => {
    const checker = new FuzzChecker();
    checker.sent(req);
    checker.observe({
      route: routeName === undefined ? undefined : route(routeName),
      id: req.id,
      method: options.method ?? 'GET',
      url,
      host: options.host ?? '127.0.0.1:1',
      tokenRoutes: options.tokens ?? (routeName ? [routeName] : []),
    });
    return [...checker.summary().violations.keys()].sort();
  };

  it('path readers: WHATWG removes ., .. and %2e forms and reads \\ as /; strict also decodes %2f and %5c; neither decodes twice', () => {
    assert.equal(PATH_READERS['whatwg']!('/api/%2E%2e/admin?x'), '/admin');
    assert.equal(PATH_READERS['whatwg']!('/api\\..\\admin'), '/admin');
    assert.equal(PATH_READERS['whatwg']!('/api/..%2fadmin'), '/api/..%2fadmin');
    assert.equal(PATH_READERS['strict']!('/api/..%2fadmin'), '/admin');
    assert.equal(PATH_READERS['strict']!('/api/%252e%252e/admin'), '/api/%252e%252e/admin');
    assert.equal(PATH_READERS['whatwg']!('//evil/api'), '//evil/api', 'a leading // is a path here, not an authority');
    assert.equal(PATH_READERS['strict']!('/api/x?q=%2f..%2f..'), '/api/x', 'the query is not the path');
  });

  it('lawful requests pass: in-prefix paths, encodings that are not dot-segments, Host case, port and trailing dot', () => {
    assert.deepEqual(flagged(request('reverse', '/api/x/../y', ['Orders.Internal.:8080']), 'orders', '/api/x/../y'), []);
    assert.deepEqual(flagged(request('reverse', '/api/%252e%252e/admin', ['orders.internal']), 'orders', '/api/%252e%252e/admin'), []);
    assert.deepEqual(flagged(request('dedicated', '/v1/refund', ['evil.internal'], { listener: 'payments' }), 'payments', '/payments-api/v1/refund'), []);
    assert.deepEqual(flagged(request('absolute', 'http://ORDERS.internal./reports/q', ['evil.internal']), 'reports', '/reports/q'), []);
    assert.deepEqual(flagged(request('connect', '/data/x', ['evil.internal'], { connectTo: 'SECURE.internal.:443' }), 'secure', '/data/x'), []);
    assert.deepEqual(flagged(request('reverse', '/x', ['gw.internal']), 'gateway', '/x', { host: 'GW.Internal.:443' }), []);
    assert.deepEqual(flagged(request('reverse', '/x', ['evil.internal']), undefined, '/x'), [], 'the decoy without a token');
    assert.equal(hostName(' [::1]:80 '), '[::1]');
    assert.equal(hostName('u:p@Orders.internal.:80'), 'orders.internal');
  });

  it('each escape is flagged', () => {
    assert.deepEqual(flagged(request('reverse', '/api/../admin', ['orders.internal']), 'orders', '/api/../admin'), ['path-escape:strict', 'path-escape:whatwg']);
    assert.deepEqual(flagged(request('reverse', '/api/x%2f..%2f..%2fadmin', ['orders.internal']), 'orders', '/api/x%2f..%2f..%2fadmin'), ['path-escape:strict']);
    assert.deepEqual(
      flagged(request('dedicated', '/v1/%2e%2e/%2e%2e/admin', [], { listener: 'payments' }), 'payments', '/payments-api/v1/%2e%2e/%2e%2e/admin'),
      ['path-escape:strict', 'path-escape:whatwg'],
    );
    assert.deepEqual(flagged(request('reverse', '/api/x', ['evil.internal']), 'orders', '/api/x'), ['other-host']);
    assert.deepEqual(flagged(request('absolute', 'http://evil.internal/api/x', ['orders.internal']), 'orders', '/api/x'), ['other-host']);
    assert.deepEqual(flagged(request('dedicated', '/x', ['evil.internal'], { listener: 'gateway' }), 'gateway', '/x', { host: 'evil.internal' }), ['preserve-host']);
    assert.deepEqual(flagged(request('reverse', '/api/x', ['orders.internal']), 'orders', '/api/x', { method: 'TRACE' }), ['trace']);
    assert.deepEqual(flagged(request('reverse', '/api/x', ['orders.internal']), 'orders', '/api/x', { tokens: ['orders', 'payments'] }), ['wrong-route-token']);
    assert.deepEqual(flagged(request('reverse', '/x', ['evil.internal']), undefined, '/x', { tokens: ['orders'] }), ['unrouted-destination']);
    assert.deepEqual(flagged(request('reverse', '/admin', ['orders.internal']), 'orders', '/admin', { tokens: [] }), ['bypass']);
    const checker = new FuzzChecker();
    checker.observe({ route: route('orders'), id: 'smuggled-1.2', method: 'GET', url: '/admin', host: 'x', tokenRoutes: ['orders'] });
    assert.deepEqual([...checker.summary().violations.keys()], ['unattributed']);
  });
});

/**
 * Issue 10, the listeners as a neighbour could abuse them: pipelining without bound (item 1),
 * connections that never finish or never speak (item 2), more connections than a listener
 * should hold (item 3); plus SIGHUP (item 16) and the start-up log (item 20). Every peer is
 * a raw socket or the real CLI against real loopback servers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { parsedLogs, startHarness, startUpstream, TOKEN_TYPE_ACCESS, type SidecarHarness, type TestUpstream } from './helpers/harness.js';
import { send, tempDir, type TempDir } from './helpers/loopback.js';
import { closedWithin, getOnce, portOf, openPeer, pipelined, sample, type Peer } from './helpers/sockets.js';
import { eventually } from './helpers/eventually.js';
import { walrusRunConfig } from './helpers/cli.js';

const BIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const get = (host: string, path = '/') => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

/** An upstream that holds every response until release() (requests counted as their heads arrive). */
async function startHoldingUpstream() {
  const held: ServerResponse[] = [];
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    held.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen: () => paths.length,
    /** Paths of the requests seen so far, in arrival order. */
    paths: () => paths.slice(),
    release() {
      for (const res of held.splice(0)) res.end('held');
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const baseConfig = (sts: FakeSts) => ({
  subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
  sts: { url: sts.tokenUrl },
});

describe('listener timeouts (issue 10 item 2)', () => {
  let sts: FakeSts;
  let upstream: TestUpstream;
  let silent: NetServer; // an unrouted destination that accepts and never speaks
  const silentSockets: Socket[] = [];
  let h: SidecarHarness;

  before(async () => {
    sts = await startFakeSts();
    upstream = await startUpstream();
    silent = createNetServer((s) => silentSockets.push(s.on('error', () => {})));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    h = await startHarness({
      ...baseConfig(sts),
      // Small on purpose: each listener must close what is silent or half-sent within these.
      limits: { headersTimeoutSeconds: 0.3, requestTimeoutSeconds: 0.6, keepAliveTimeoutSeconds: 0.3, idleTimeoutSeconds: 1.2 },
      routes: [
        { name: 'orders', host: 'orders.internal', upstream: upstream.url, audience: 'orders' },
        { name: 'billing', listen: '127.0.0.1:0', upstream: upstream.url, audience: 'billing' },
        { name: 'gcp', audience: 'gcp', lazy: true },
      ],
      tokenEndpoint: { listen: '127.0.0.1:0', callers: 'loopback' },
      metadata: { gce: { listen: '127.0.0.1:0', route: 'gcp', projectId: 'p', serviceAccountEmail: 'sa@p.iam.gserviceaccount.com' } },
    });
  });
  after(async () => {
    await h.close();
    for (const s of silentSockets) s.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
    await upstream.close();
    await sts.close();
  });

  // Generous next to the 0.3-1.2 s limits: the check is that they end at all.
  const WITHIN_MS = 3000;
  const listeners = () => ({
    admin: portOf(h.sidecar.adminUrl),
    proxy: portOf(h.sidecar.proxyUrl),
    route: portOf(h.sidecar.routeUrls['billing']!),
    token: portOf(h.sidecar.endpointUrls.token!),
    gce: portOf(h.sidecar.endpointUrls.gce!),
  });

  it('closes a connection that never sends a byte, on every listener', async () => {
    const peers = await Promise.all(Object.values(listeners()).map((port) => openPeer(port)));
    const closed = await Promise.all(peers.map((p) => closedWithin(p, WITHIN_MS)));
    assert.deepEqual(closed, peers.map(() => true), JSON.stringify(Object.keys(listeners())));
  });

  it('closes a half-sent request head with 408, on every listener', async () => {
    const peers: Peer[] = [];
    for (const port of Object.values(listeners())) {
      const p = await openPeer(port);
      p.socket.write('GET /metrics HTTP/1.1\r\nHost: orders.internal\r\nX-Slow: ');
      peers.push(p);
    }
    const closed = await Promise.all(peers.map((p) => closedWithin(p, WITHIN_MS)));
    assert.deepEqual(closed, peers.map(() => true));
    for (const p of peers) assert.match(p.received(), /^HTTP\/1\.1 408 /);
  });

  it('closes a request whose body never completes (requestTimeoutSeconds)', async () => {
    const p = await openPeer(listeners().proxy);
    p.socket.write('POST /upload HTTP/1.1\r\nHost: orders.internal\r\nContent-Length: 100\r\n\r\nonly a part');
    assert.equal(await closedWithin(p, WITHIN_MS), true);
  });

  it('closes an idle kept-alive connection after a response (keepAliveTimeoutSeconds)', async () => {
    const p = await openPeer(listeners().admin);
    p.socket.write(get('admin', '/healthz'));
    assert.equal(await eventually(() => p.received().includes('"ok"'), { timeoutMs: WITHIN_MS }), true);
    assert.equal(await closedWithin(p, WITHIN_MS), true);
  });

  it('closes silent and half-sent HTTP inside a CONNECT tunnel, and a silent spliced tunnel', async () => {
    const port = listeners().proxy;
    // Routed destination: the sidecar parses the HTTP inside itself.
    const inner = await openPeer(port);
    inner.socket.write('CONNECT orders.internal:80 HTTP/1.1\r\nHost: orders.internal:80\r\n\r\nGET / HTTP/1.1\r\nHost: orders.internal\r\n');
    // Unrouted destination: spliced byte for byte to a server that never speaks.
    const spliced = await openPeer(port);
    const silentPort = (silent.address() as AddressInfo).port;
    spliced.socket.write(`CONNECT 127.0.0.1:${silentPort} HTTP/1.1\r\nHost: 127.0.0.1:${silentPort}\r\n\r\n`);
    assert.equal(await eventually(() => spliced.received().startsWith('HTTP/1.1 200'), { timeoutMs: WITHIN_MS }), true);
    assert.deepEqual(await Promise.all([closedWithin(inner, WITHIN_MS), closedWithin(spliced, WITHIN_MS)]), [true, true]);
    assert.match(inner.received(), /HTTP\/1\.1 200 Connection established\r\n\r\nHTTP\/1\.1 408 /);
    // The sidecar's side of the splice went too.
    assert.equal(await eventually(() => silentSockets.every((s) => s.destroyed || s.readableEnded), { timeoutMs: WITHIN_MS }), true);
  });

  it('counts what it closed by listener kind and reason', async () => {
    const metrics = (await send(`${h.sidecar.adminUrl}/metrics`)).text;
    const rejected = (listener: string, reason: string) => sample(metrics, 'sts_sidecar_connections_rejected_total', { listener, reason });
    assert.ok(rejected('admin', 'headers_timeout') >= 2, metrics);
    assert.ok(rejected('endpoints', 'headers_timeout') >= 4);
    assert.ok(rejected('proxy', 'headers_timeout') >= 5);
    assert.ok(rejected('proxy', 'request_timeout') >= 1, metrics.split('\n').filter((l) => l.includes('connections_')).join('\n'));
    assert.ok(rejected('proxy', 'idle_timeout') >= 1, 'the silent spliced tunnel');
    assert.ok(sample(metrics, 'sts_sidecar_connections_open', { listener: 'admin' }) >= 1, 'this scrape');
  });
});

describe('requests in flight per connection and connections per listener (issue 10 items 1, 3)', () => {
  let sts: FakeSts;
  let holding: Awaited<ReturnType<typeof startHoldingUpstream>>;
  let h: SidecarHarness;
  const MAX_IN_FLIGHT = 16; // the default

  before(async () => {
    sts = await startFakeSts();
    holding = await startHoldingUpstream();
    h = await startHarness({
      ...baseConfig(sts),
      limits: { maxConnections: { admin: 4 } },
      routes: [{ name: 'orders', host: 'orders.internal', upstream: holding.url, audience: 'orders' }],
    });
  });
  after(async () => {
    holding.release();
    await h.close();
    await holding.close();
    await sts.close();
  });

  it('admin: 4 connections x 5,000 pipelined GET /metrics, never read, are cut; memory stays bounded and /readyz answers', async () => {
    const before = process.memoryUsage().rss;
    const write = pipelined(5000, () => get('admin', '/metrics'));
    const peers = await Promise.all([0, 1, 2, 3].map(() => openPeer(portOf(h.sidecar.adminUrl), { read: false })));
    for (const p of peers) p.socket.write(write);
    assert.deepEqual(await Promise.all(peers.map((p) => closedWithin(p, 10_000))), [true, true, true, true]);
    const grown = (process.memoryUsage().rss - before) / 2 ** 20;
    // Unbounded, these 20,000 renderings took the sidecar from 107 to 631 MB.
    assert.ok(grown < 100, `RSS grew by ${grown.toFixed(0)} MB`);
    const ready = await getOnce(`${h.sidecar.adminUrl}/readyz`);
    assert.equal(ready.status, 200);
    const metrics = (await getOnce(`${h.sidecar.adminUrl}/metrics`)).text;
    assert.ok(sample(metrics, 'sts_sidecar_connections_rejected_total', { listener: 'admin', reason: 'pipelining' }) >= 4);
  });

  it('proxy: thousands of pipelined GETs in one write reach the upstream at most 16 at a time, then the connection is cut', async () => {
    const start = holding.seen();
    const p = await openPeer(portOf(h.sidecar.proxyUrl), { read: false });
    p.socket.write(pipelined(3000, (i) => get('orders.internal', `/pipelined/${i}`)));
    assert.equal(await closedWithin(p, 10_000), true);
    // A marker on a fresh connection travels the same path after them: once it is in, so are
    // they. (Cutting the connection may abort the pipelined ones before any is dispatched, so
    // the wait is for the marker, not for a count.)
    const marker = request(`${h.sidecar.proxyUrl}/marker`, { headers: { host: 'orders.internal' } });
    assert.equal(await eventually(() => holding.paths().includes('/marker')), true);
    const reached = holding.paths().slice(start).filter((path) => path.startsWith('/pipelined/')).length;
    assert.ok(reached <= MAX_IN_FLIGHT, `${reached} pipelined requests reached the upstream`);
    holding.release();
    assert.equal((await marker).statusCode, 200);
  });

  it('proxy: at the limit the connection is paused, not cut: a request sent then waits its turn', async () => {
    const p = await openPeer(portOf(h.sidecar.proxyUrl));
    const start = holding.seen();
    p.socket.write(pipelined(MAX_IN_FLIGHT, (i) => get('orders.internal', `/turn/${i}`)));
    assert.equal(await eventually(() => holding.seen() === start + MAX_IN_FLIGHT), true);
    p.socket.write(get('orders.internal', '/turn/last'));
    holding.release();
    // Read once the first answers freed a slot.
    assert.equal(await eventually(() => holding.seen() === start + MAX_IN_FLIGHT + 1), true);
    holding.release();
    const all = () => (p.received().match(/HTTP\/1\.1 200 /g) ?? []).length;
    assert.equal(await eventually(() => all() === MAX_IN_FLIGHT + 1, { what: () => `all in-flight requests; received: ${p.received().slice(-300)}` }), true, p.received().slice(-300));
    assert.equal(p.isClosed(), false);
    p.socket.destroy();
  });

  it('admin: connections past maxConnections are closed as they are accepted; the proxy keeps serving, and /readyz once one is freed', async () => {
    const adminPort = portOf(h.sidecar.adminUrl);
    const idle = [];
    for (let i = 0; i < 4; i++) idle.push(await openPeer(adminPort));
    const extra = await openPeer(adminPort);
    assert.equal(await closedWithin(extra, 5000), true, 'the fifth connection is closed');
    assert.equal(extra.received(), '');
    for (const p of idle) assert.equal(p.isClosed(), false);

    const seen = holding.seen();
    const proxied = request(`${h.sidecar.proxyUrl}/during-cap`, { headers: { host: 'orders.internal' } });
    assert.equal(await eventually(() => holding.seen() > seen), true);
    holding.release();
    assert.equal((await proxied).statusCode, 200);

    idle[0]!.socket.destroy();
    assert.equal(
      await eventually(async () => (await getOnce(`${h.sidecar.adminUrl}/readyz`).catch(() => ({ status: 0 }))).status === 200),
      true,
    );
    for (const p of idle) p.socket.destroy();
    const metrics = (await getOnce(`${h.sidecar.adminUrl}/metrics`)).text;
    assert.ok(sample(metrics, 'sts_sidecar_connections_rejected_total', { listener: 'admin', reason: 'max_connections' }) >= 1);
  });
});

describe('the start-up log (issue 10 item 20)', () => {
  it('shows each endpoint\'s address, while "token" fields stay redacted', async () => {
    const sts = await startFakeSts();
    const h = await startHarness({
      ...baseConfig(sts),
      routes: [{ name: 'gcp', audience: 'gcp', lazy: true }],
      tokenEndpoint: { listen: '127.0.0.1:0', callers: 'loopback' },
    });
    try {
      const line = parsedLogs(h.logs).find((l) => l['msg'] === 'sts-sidecar listening')!;
      assert.deepEqual(line['endpoints'], [{ name: 'token', url: h.sidecar.endpointUrls.token }]);
      h.sidecar.logger.info({ token: 'plain-secret-value', nested: { token: 'plain-secret-value' } }, 'redaction check');
      h.sidecar.logger.flush();
      const check = parsedLogs(h.logs).find((l) => l['msg'] === 'redaction check')!;
      assert.deepEqual([check['token'], (check['nested'] as Record<string, unknown>)['token']], ['[Redacted]', '[Redacted]']);
    } finally {
      await h.close();
      await sts.close();
    }
  });
});

describe('SIGHUP (issue 10 item 16; issue 13: it reloads)', () => {
  let dir: TempDir;
  before(async () => (dir = await tempDir('sts-sidecar-hup-')));
  after(() => dir.cleanup());

  it('does not stop the real CLI: it reloads the configuration and keeps serving, then SIGTERM exits 0', async () => {
    const sts = await startFakeSts();
    const upstream = await startUpstream();
    const config = join(dir.path, 'sidecar.yaml');
    await writeFile(config, walrusRunConfig(sts.tokenUrl, upstream.url));
    const child = spawn(process.execPath, [BIN, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      assert.equal(await eventually(() => out.includes('sts-sidecar listening'), { timeoutMs: 10_000 }), true);
      const line = JSON.parse(out.split('\n').find((l) => l.includes('sts-sidecar listening'))!) as { proxy: string; admin: string };

      let exitCode: number | null | undefined;
      child.once('exit', (code) => (exitCode = code));
      child.kill('SIGHUP');
      assert.equal(await eventually(() => `${out}${err}`.includes('configuration reloaded') || exitCode !== undefined, { timeoutMs: 10_000 }), true);
      assert.equal(exitCode, undefined, 'still running after SIGHUP');
      const res = await request(`${line.proxy}/after-hup`, { headers: { host: 'walrus.internal' } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal((await send(`${line.admin}/healthz`)).status, 200);

      const exit = new Promise<number | null>((resolve) => (exitCode !== undefined ? resolve(exitCode) : child.once('exit', resolve)));
      child.kill('SIGTERM');
      assert.equal(await exit, 0);
    } finally {
      child.kill('SIGKILL');
      await upstream.close();
      await sts.close();
    }
  });
});

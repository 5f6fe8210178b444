/**
 * Issue 10, where the forward proxy may relay what no route claims: never back into the
 * sidecar itself, whatever name the app uses (item 10: 300 nested CONNECTs in one write held
 * 600 descriptors), and, once other hosts may call the proxy (proxy.allowNonLoopback), never
 * to loopback, link-local or unspecified addresses, where the token endpoint and the metadata
 * emulation trust their callers (item 11). Raw sockets and real loopback servers throughout.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { ConfigValidationError, parseConfig } from '../src/config/load.js';
import { createDialPolicy } from '../src/proxy/forward/dial-policy.js';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { startHarness, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { startRecordingServer, type RecordingServer } from './helpers/forward.js';
import { getOnce, portOf, openDescriptors, openPeer, pipelined, sample } from './helpers/sockets.js';
import { eventually } from './helpers/eventually.js';


interface Answer {
  readonly status: number;
  readonly code: string | undefined;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** An absolute-form request to the proxy, as an app with http_proxy set sends it. */
function viaProxy(proxyUrl: string, target: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const proxy = new URL(proxyUrl);
    const req = httpRequest(
      { host: proxy.hostname, port: proxy.port, path: target, method: init.method ?? 'GET', agent: false, headers: { host: new URL(target).host, ...init.headers } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, code: res.headers['x-sts-sidecar-error'] as string | undefined, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/** A CONNECT to the proxy: the status line and the sidecar's error code, if any. */
async function connectVia(proxyUrl: string, authority: string): Promise<Answer> {
  const peer = await openPeer(portOf(proxyUrl));
  try {
    peer.socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    await eventually(() => peer.received().includes('\r\n\r\n') || peer.isClosed());
    const head = peer.received();
    return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), code: /x-sts-sidecar-error: (\S+)/i.exec(head)?.[1], headers: {} };
  } finally {
    peer.socket.destroy();
  }
}

const config = (sts: FakeSts, upstream: RecordingServer, extra: Record<string, unknown> = {}) => ({
  subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
  sts: { url: sts.tokenUrl },
  routes: [
    { name: 'orders', host: 'orders.internal', upstream: upstream.url, audience: 'orders' },
    { name: 'gcp', audience: 'gcp', lazy: true },
  ],
  tokenEndpoint: { listen: '127.0.0.1:0', callers: 'loopback' },
  ...extra,
});

describe('no relay back into the sidecar (issue 10 item 10)', () => {
  let sts: FakeSts;
  let orders: RecordingServer;
  let other: RecordingServer; // a local service no route names
  let forwarder: NetServer; // a port mapping back to the sidecar's proxy port
  let h: SidecarHarness;

  before(async () => {
    sts = await startFakeSts();
    orders = await startRecordingServer();
    other = await startRecordingServer();
    h = await startHarness(config(sts, orders));
    forwarder = createNetServer((s) => {
      const back = connect(portOf(h.sidecar.proxyUrl), '127.0.0.1');
      s.pipe(back).pipe(s);
      s.on('error', () => back.destroy());
      back.on('error', () => s.destroy());
    });
    await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    await h.close();
    await new Promise<void>((resolve) => forwarder.close(() => resolve()));
    await other.close();
    await orders.close();
    await sts.close();
  });

  it('300 nested CONNECTs to its own address in one write: 508 ERR_FORWARD_LOOP at the first, descriptors stay near baseline', async () => {
    const self = `127.0.0.1:${portOf(h.sidecar.proxyUrl)}`;
    const baseline = openDescriptors();
    const peer = await openPeer(portOf(h.sidecar.proxyUrl));
    peer.socket.write(pipelined(300, () => `CONNECT ${self} HTTP/1.1\r\nHost: ${self}\r\n\r\n`));
    assert.equal(await eventually(() => peer.received().includes('\r\n\r\n') || peer.isClosed()), true);
    assert.match(peer.received(), /^HTTP\/1\.1 508 /);
    assert.match(peer.received(), /x-sts-sidecar-error: ERR_FORWARD_LOOP/i);
    // Measured while the app still holds its connection: a nest would hold two per level.
    assert.ok(openDescriptors() - baseline <= 4, `${openDescriptors() - baseline} descriptors above baseline`);
    peer.socket.destroy();
    assert.equal(await eventually(() => openDescriptors() <= baseline), true);
  });

  it('refuses the loop whatever name or form the target uses: localhost, IPv4-mapped IPv6, absolute-form, any of its listeners', async () => {
    const proxyPort = portOf(h.sidecar.proxyUrl);
    for (const authority of [`localhost:${proxyPort}`, `[::ffff:127.0.0.1]:${proxyPort}`, `127.0.0.1:${portOf(h.sidecar.adminUrl)}`]) {
      assert.deepEqual(await connectVia(h.sidecar.proxyUrl, authority), { status: 508, code: 'ERR_FORWARD_LOOP', headers: {} }, authority);
    }
    for (const target of [`${h.sidecar.adminUrl}/metrics`, `http://localhost:${portOf(h.sidecar.adminUrl)}/readyz`, `${h.sidecar.proxyUrl}/x`]) {
      const answer = await viaProxy(h.sidecar.proxyUrl, target);
      assert.deepEqual([answer.status, answer.code], [508, 'ERR_FORWARD_LOOP'], target);
    }
    const token = await viaProxy(h.sidecar.proxyUrl, `${h.sidecar.endpointUrls.token}/token`, { method: 'POST', body: 'grant_type=x' });
    assert.deepEqual([token.status, token.code], [508, 'ERR_FORWARD_LOOP']);
  });

  it('marks what it passes through with Via (RFC 9110 7.6.3), and refuses it when it comes back by a path no address reveals', async () => {
    const passed = await viaProxy(h.sidecar.proxyUrl, `${other.url}/plain`, { headers: { via: '1.0 corporate-proxy' } });
    assert.equal(passed.status, 200);
    const via = other.requests.at(-1)!.headers.via;
    assert.match(String(via), /^1\.0 corporate-proxy, 1\.1 sts-sidecar-[0-9a-f]{8}$/);
    // Through a port mapping, the sidecar's own address never shows: its Via does.
    const looped = await viaProxy(h.sidecar.proxyUrl, `http://127.0.0.1:${(forwarder.address() as AddressInfo).port}/round`);
    assert.deepEqual([looped.status, looped.code], [508, 'ERR_FORWARD_LOOP']);
    const metrics = (await getOnce(`${h.sidecar.adminUrl}/metrics`)).text;
    assert.ok(sample(metrics, 'sts_sidecar_connections_rejected_total', { listener: 'proxy', reason: 'forward_loop' }) >= 1);
    assert.ok(sample(metrics, 'sts_sidecar_forward_requests_total', { kind: 'connect', result: 'loop' }) >= 1);
  });

  it('still relays to other local services, and routes as before', async () => {
    assert.equal((await viaProxy(h.sidecar.proxyUrl, `${other.url}/fine`)).status, 200);
    assert.equal((await viaProxy(h.sidecar.proxyUrl, 'http://orders.internal/routed')).status, 200);
    assert.equal(orders.requests.at(-1)!.headers.authorization?.startsWith('Bearer '), true);
  });
});

describe('a connection from one of its own relay sockets is refused where it arrives', () => {
  it('admit() refuses a request whose peer is a tracked relay socket, and forgets it once closed', async () => {
    const policy = createDialPolicy({ refuseLocalDestinations: false });
    const verdicts: Array<string | undefined> = [];
    const server = createServer((req, res) => {
      verdicts.push(policy.admit(req)?.code);
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const send = async (track: boolean) => {
        const socket = connect(port, '127.0.0.1');
        await new Promise<void>((resolve) => socket.once('connect', resolve));
        if (track) policy.trackRelay(socket);
        socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        socket.resume();
        await new Promise<void>((resolve) => socket.once('close', resolve));
      };
      await send(true);
      await send(false);
      assert.deepEqual(verdicts, ['ERR_FORWARD_LOOP', undefined]);
    } finally {
      server.close();
    }
  });
});

describe('proxy.allowNonLoopback: no relay to local-only addresses (issue 10 item 11)', () => {
  let sts: FakeSts;
  let orders: RecordingServer;
  let local: RecordingServer; // e.g. a metadata server or another local-only service
  let open: SidecarHarness;

  before(async () => {
    sts = await startFakeSts();
    orders = await startRecordingServer();
    local = await startRecordingServer();
    // Listening on loopback (the only address the tests have), as if it were 0.0.0.0.
    open = await startHarness(config(sts, orders, { proxy: { listen: '127.0.0.1:0', allowNonLoopback: true } }));
  });
  after(async () => {
    await open.close();
    await local.close();
    await orders.close();
    await sts.close();
  });

  it('refuses POST http://127.0.0.1:<tokenEndpoint>/token in absolute-form and CONNECT to it: 403 ERR_FORWARD_DENIED', async () => {
    const token = await viaProxy(open.sidecar.proxyUrl, `${open.sidecar.endpointUrls.token}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience=gcp',
    });
    assert.deepEqual([token.status, token.code], [403, 'ERR_FORWARD_DENIED']);
    const tunnel = await connectVia(open.sidecar.proxyUrl, `127.0.0.1:${portOf(open.sidecar.endpointUrls.token!)}`);
    assert.deepEqual([tunnel.status, tunnel.code], [403, 'ERR_FORWARD_DENIED']);
    assert.equal(sts.requests.filter((p) => p.get('audience') === 'gcp').length, 0, 'no token was exchanged for the caller');
  });

  it('judges the address dialled, after DNS: localhost, IPv4-mapped, link-local and unspecified are refused too', async () => {
    const port = local.port;
    for (const target of [`${local.url}/a`, `http://localhost:${port}/b`, `http://[::ffff:127.0.0.1]:${port}/c`, 'http://169.254.169.254/computeMetadata/v1/', `http://0.0.0.0:${port}/d`]) {
      const answer = await viaProxy(open.sidecar.proxyUrl, target);
      assert.deepEqual([answer.status, answer.code], [403, 'ERR_FORWARD_DENIED'], target);
    }
    for (const authority of [`localhost:${port}`, `127.0.0.1:${port}`, '169.254.169.254:80', '[fe80::1]:443']) {
      assert.deepEqual([(await connectVia(open.sidecar.proxyUrl, authority)).status], [403], authority);
    }
    assert.equal(local.requests.length, 0);
  });

  it('still sends routed requests to their configured (loopback) upstream with the token', async () => {
    const routed = await viaProxy(open.sidecar.proxyUrl, 'http://orders.internal/routed');
    assert.equal(routed.status, 200);
    assert.equal(orders.requests.at(-1)!.headers.authorization?.startsWith('Bearer '), true);
  });

  it('by default (allowNonLoopback: false) local apps reach local services through the proxy as before', async () => {
    const closed = await startHarness(config(sts, orders));
    try {
      assert.equal((await viaProxy(closed.sidecar.proxyUrl, `http://localhost:${local.port}/local`)).status, 200);
      assert.equal((await connectVia(closed.sidecar.proxyUrl, `127.0.0.1:${local.port}`)).status, 200);
      assert.equal(local.requests.at(-1)!.url, '/local');
    } finally {
      await closed.close();
    }
  });
});

describe('config: non-loopback proxy listeners need proxy.allowNonLoopback (issue 10 item 11)', () => {
  const base = {
    subjectToken: { value: 'x', type: TOKEN_TYPE_ACCESS },
    sts: { url: 'http://127.0.0.1:1/token' },
    routes: [{ name: 'orders', host: 'orders.internal', upstream: 'http://127.0.0.1:2' }],
  };
  const paths = (input: Record<string, unknown>) => {
    try {
      parseConfig(input);
      return [];
    } catch (err) {
      assert.ok(err instanceof ConfigValidationError);
      assert.equal(err.code, 'ERR_CONFIG_INVALID');
      return err.problems.map((p) => p.path);
    }
  };

  it('refuses proxy.listen and routes[].listen on 0.0.0.0 or ::, naming the key', () => {
    assert.deepEqual(paths({ ...base, proxy: { listen: '0.0.0.0:15001' } }), ['proxy.listen']);
    assert.deepEqual(paths({ ...base, proxy: { listen: '[::]:15001' } }), ['proxy.listen']);
    const routes = [{ ...base.routes[0], listen: '0.0.0.0:8080' }];
    assert.equal(paths({ ...base, routes }).length, 1);
    assert.match(paths({ ...base, routes })[0]!, /^routes\W+0\W+listen$/);
  });

  it('accepts them with proxy.allowNonLoopback: true, and loopback without it', () => {
    assert.deepEqual(paths({ ...base, proxy: { listen: '0.0.0.0:15001', allowNonLoopback: true }, routes: [{ ...base.routes[0], listen: '0.0.0.0:8080' }] }), []);
    assert.deepEqual(paths({ ...base, proxy: { listen: '127.0.0.1:15001' } }), []);
    assert.equal(parseConfig(base).proxy.allowNonLoopback, false);
  });
});

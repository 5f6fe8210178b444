/**
 * Issue 10, the request path beyond paths: preserveHost sends the route's host (item 8),
 * upgrades splice only a 101 (item 9), upstream 401s cannot turn into an exchange storm and a
 * refused token is dropped after any 401 (item 5), 1xx interim answers (item 6), TRACE (item
 * 14) and abandoned requests (item 18). Real loopback STS, upstreams and raw clients.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer as createNetServer, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { eventually } from './helpers/eventually.js';
import { startFakeSts } from './helpers/fake-sts.js';
import { closeAfter, parsedLogs, startHarness, startUpstream, TOKEN_TYPE_ACCESS } from './helpers/harness.js';
import { bearer, completeResponse, RawClient, runClient } from './helpers/forward.js';
import { startHttpServer, tempDir } from './helpers/loopback.js';
import { createTestPki } from './helpers/mtls.js';

const subject = { subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS } };

/** The value of one sample of a Prometheus text exposition, 0 when absent. */
async function metric(adminUrl: string, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** A raw HTTP/1.1 upstream that records every byte and answers each request head with 200 "ok", keeping the connection. */
async function startIgnoringUpstream(t: { after(fn: () => unknown): void }) {
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    let buffered = '';
    socket.on('data', (d: Buffer) => {
      received.push(d.toString('latin1'));
      buffered += d.toString('latin1');
      let end;
      while ((end = buffered.indexOf('\r\n\r\n')) !== -1) {
        buffered = buffered.slice(end + 4);
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok');
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, text: () => received.join('') };
}

describe('preserveHost (issue 10 item 8)', () => {
  it("the Host sent upstream is the route's configured host, never the one the app names", async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = own(await startUpstream());
    const h = own(await startHarness({
      ...subject,
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'orders', host: 'orders.internal', listen: '127.0.0.1:0', preserveHost: true, upstream: upstream.url }],
    }));
    // On the route's own port the app can name any virtual host behind a Host-routing gateway.
    const r = await runClient('curl', ['-q', '-sS', '-H', 'Host: billing.internal', `${h.sidecar.routeUrls['orders']}/x`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(upstream.requests.at(-1)!.headers.host, 'orders.internal');
    assert.equal(upstream.requests.at(-1)!.headers.authorization, bearer(sts.issued[0]));
    // On the shared listener the route matched orders.internal on any port: the port stays behind.
    const shared = await request(`${h.sidecar.proxyUrl}/y`, { headers: { host: 'Orders.Internal:15001' } });
    await shared.body.dump();
    assert.equal(shared.statusCode, 200);
    assert.equal(upstream.requests.at(-1)!.headers.host, 'orders.internal');
    assert.ok(upstream.requests.every((req) => req.headers.host === 'orders.internal'));
  });
});

describe('upgrades splice only a 101 (issue 10 item 9)', () => {
  it('an upstream that ignores Upgrade: its 200 reaches the app with Connection: close and a pipelined request never reaches it', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = await startIgnoringUpstream(t);
    const h = own(await startHarness({ ...subject, sts: { url: sts.tokenUrl }, routes: [{ name: 'ws', listen: '127.0.0.1:0', pathPrefix: '/ws', upstream: upstream.url }] }));
    const port = Number(new URL(h.sidecar.routeUrls['ws']!).port);

    // The second request rides in the same write as the handshake, outside /ws.
    const client = await RawClient.connect(port);
    t.after(() => client.close());
    client.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /outside HTTP/1.1\r\nHost: x\r\n\r\n');
    const answer = await client.take((s) => completeResponse(s));
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(answer, /\r\nconnection: close\r\n/i);
    assert.ok(answer.endsWith('\r\n\r\nok'), answer);
    // ... and the connection ends: a request written now goes nowhere.
    client.write('GET /later HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(await client.take(() => false, 2000).catch(() => 'still open'), '');

    const seen = upstream.text();
    assert.match(seen, /^GET \/ws HTTP\/1\.1\r\n/);
    assert.ok(seen.includes(`authorization: ${bearer(sts.issued[0])}`));
    assert.equal(seen.match(/ HTTP\/1\.1\r\n/g)?.length, 1, seen);
    assert.ok(!seen.includes('/outside') && !seen.includes('/later'));
    // Counted and logged like a request.
    assert.equal(await metric(h.sidecar.adminUrl, 'sts_sidecar_proxy_requests_total', 'route="ws",status_class="2xx"'), 1);
    assert.ok(parsedLogs(h.logs).some((l) => l['msg'] === 'proxied' && l['route'] === 'ws' && l['status'] === 200 && l['upgrade'] === 'websocket'));
  });

  it('a 101 still splices both ways, bytes sent early included, and is counted as 1xx', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = createHttpServer();
    let seenAuth: string | undefined;
    upstream.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      seenAuth = req.headers.authorization;
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello');
      if (head.length) socket.write(Buffer.concat([Buffer.from('echo:'), head]));
      socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      upstream.closeAllConnections();
      upstream.close();
    });
    const h = own(await startHarness({
      ...subject,
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'ws', listen: '127.0.0.1:0', upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` }],
    }));
    const client = await RawClient.connect(Number(new URL(h.sidecar.routeUrls['ws']!).port));
    t.after(() => client.close());
    client.write('GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly');
    const answer = await client.take((s) => s.includes('echo:early'));
    assert.match(answer, /^HTTP\/1\.1 101 Switching Protocols\r\n[^]*\r\n\r\nhello/);
    client.write('ping');
    assert.equal(await client.take((s) => s.includes('echo:ping')), 'echo:ping');
    assert.equal(seenAuth, bearer(sts.issued[0]));
    assert.equal(await metric(h.sidecar.adminUrl, 'sts_sidecar_proxy_requests_total', 'route="ws",status_class="1xx"'), 1);
  });

  it('over https the handshake presents the workload certificate, as pooled requests do (RFC 8705 3)', async (t) => {
    const own = closeAfter(t);
    const dir = await tempDir();
    t.after(() => dir.cleanup());
    const pki = createTestPki();
    await writeFile(join(dir.path, 'tls.crt'), pki.alice.certPem);
    await writeFile(join(dir.path, 'tls.key'), pki.alice.keyPem);
    await writeFile(join(dir.path, 'ca.crt'), pki.ca.certPem);
    const sts = own(await startFakeSts());
    const upstream = createHttpsServer({ cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true });
    let peer: string | undefined;
    upstream.on('upgrade', (req: IncomingMessage, socket: TLSSocket) => {
      peer = String(socket.getPeerCertificate().subject?.CN);
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
      socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from(`echo(${req.headers.authorization === bearer(sts.issued[0])}):`), d])));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      upstream.closeAllConnections();
      upstream.close();
    });
    const h = own(await startHarness({
      ...subject,
      sts: { url: sts.tokenUrl },
      identity: { cert: join(dir.path, 'tls.crt'), key: join(dir.path, 'tls.key'), ca: join(dir.path, 'ca.crt') },
      routes: [{ name: 'wss', listen: '127.0.0.1:0', upstream: `https://127.0.0.1:${(upstream.address() as AddressInfo).port}` }],
    }));
    const client = await RawClient.connect(Number(new URL(h.sidecar.routeUrls['wss']!).port));
    t.after(() => client.close());
    client.write('GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    assert.match(await client.take((s) => s.includes('\r\n\r\n')), /^HTTP\/1\.1 101 /);
    client.write('ping');
    assert.equal(await client.take((s) => s.includes('ping')), 'echo(true):ping');
    assert.equal(peer, 'alice');
  });

  it("authorization.replaceExisting: false keeps the app's own credential on an upgrade", async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = await startIgnoringUpstream(t);
    const h = own(await startHarness({
      ...subject,
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'ws', listen: '127.0.0.1:0', upstream: upstream.url, lazy: true, authorization: { replaceExisting: false } }],
    }));
    const client = await RawClient.connect(Number(new URL(h.sidecar.routeUrls['ws']!).port));
    t.after(() => client.close());
    client.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer apps-own\r\n\r\n');
    assert.match(await client.take(completeResponse), /^HTTP\/1\.1 200 /);
    assert.match(upstream.text(), /\r\nAuthorization: Bearer apps-own\r\n/);
    assert.equal(upstream.text().match(/authorization:/gi)?.length, 1);
    assert.equal(sts.requests.length, 0);
  });
});

describe('upstream 401s (issue 10 item 5)', () => {
  it('100 GETs to a path answering 401 cause a bounded number of exchanges, each 401 reaching the app', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = own(await startUpstream((_req, res) => {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer error="invalid_token"' });
      res.end('no');
    }));
    const h = own(await startHarness({ ...subject, sts: { url: sts.tokenUrl }, routes: [{ name: 'api', listen: '127.0.0.1:0', upstream: upstream.url }] }));
    const url = `${h.sidecar.routeUrls['api']}/protected`;
    for (let i = 0; i < 100; i++) {
      const res = await request(url);
      await res.body.dump();
      assert.equal(res.statusCode, 401);
    }
    // One exchange at start, one after the first 401; the rest fall inside
    // limits.reexchangeAfter401IntervalSeconds (5 s by default). Before: one per request.
    assert.ok(sts.issued.length <= 3, `${sts.issued.length} exchanges`);
    assert.ok(upstream.requests.length <= 102, `${upstream.requests.length} upstream requests`);
  });

  it('a POST answered 401 is not retried, and the next POST carries a new token', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = own(await startUpstream((req, res) => {
      const ok = req.headers.authorization !== bearer(sts.issued[0]);
      res.writeHead(ok ? 200 : 401, { 'content-type': 'text/plain' });
      res.end(ok ? 'ok' : 'revoked');
    }));
    const h = own(await startHarness({ ...subject, sts: { url: sts.tokenUrl }, routes: [{ name: 'api', listen: '127.0.0.1:0', upstream: upstream.url }] }));
    const posted = await request(`${h.sidecar.routeUrls['api']}/orders`, { method: 'POST', body: 'data' });
    await posted.body.dump();
    assert.equal(posted.statusCode, 401);
    assert.equal(upstream.requests.length, 1);
    // The next POST (never retried either) goes out with a new token at once.
    const next = await request(`${h.sidecar.routeUrls['api']}/orders`, { method: 'POST', body: 'more' });
    assert.equal(await next.body.text(), 'ok');
    assert.equal(sts.issued.length, 2);
    assert.equal(upstream.requests.length, 2);
    assert.equal(upstream.requests.at(-1)!.headers.authorization, bearer(sts.issued[1]));
  });
});

describe('1xx interim answers (issue 10 item 6)', () => {
  it('103 Early Hints reaches the app before the final answer, a 102 is dropped; both counted by their final status', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = own(await startHttpServer((req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/hints') res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      else res.writeProcessing();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '4' });
      res.end('done');
    }));
    const h = own(await startHarness({
      ...subject,
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'web', host: 'web.internal', listen: '127.0.0.1:0', upstream: upstream.url }],
    }));
    const client = await RawClient.connect(Number(new URL(h.sidecar.routeUrls['web']!).port));
    t.after(() => client.close());
    client.write('GET /hints HTTP/1.1\r\nHost: x\r\n\r\n');
    const hinted = await client.take((s) => s.endsWith('done'));
    assert.match(hinted, /^HTTP\/1\.1 103 Early Hints\r\nLink: <\/style\.css>; rel=preload; as=style\r\n\r\nHTTP\/1\.1 200 OK\r\n/i);
    client.write('GET /processing HTTP/1.1\r\nHost: x\r\n\r\n');
    const processed = await client.take((s) => s.endsWith('done'));
    assert.match(processed, /^HTTP\/1\.1 200 OK\r\n/);
    // The same through the forward proxy's passthrough (a destination no route names).
    const forwarded = await RawClient.connect(Number(new URL(h.sidecar.proxyUrl).port));
    t.after(() => forwarded.close());
    forwarded.write(`GET ${upstream.url}/hints HTTP/1.1\r\nHost: ${new URL(upstream.url).host}\r\n\r\n`);
    assert.match(await forwarded.take((s) => s.endsWith('done')), /^HTTP\/1\.1 103 Early Hints\r\n[^]*HTTP\/1\.1 200 OK\r\n/);
    assert.equal(await metric(h.sidecar.adminUrl, 'sts_sidecar_proxy_requests_total', 'route="web",status_class="2xx"'), 2);
    assert.equal(await metric(h.sidecar.adminUrl, 'sts_sidecar_proxy_requests_total', 'route="web",status_class="1xx"'), 0);
  });
});

describe('TRACE (issue 10 item 14)', () => {
  it('RFC 9110 9.3.8: TRACE on a route gets 405 ERR_PROXY_METHOD_NOT_ALLOWED and nothing is forwarded', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = own(await startUpstream());
    const h = own(await startHarness({ ...subject, sts: { url: sts.tokenUrl }, routes: [{ name: 'api', host: 'api.internal', listen: '127.0.0.1:0', upstream: upstream.url }] }));
    const direct = await runClient('curl', ['-q', '-sS', '-X', 'TRACE', '-w', '\n%{http_code}', `${h.sidecar.routeUrls['api']}/`]);
    assert.match(direct.stdout, /"code":"ERR_PROXY_METHOD_NOT_ALLOWED"[^]*\n405$/);
    const proxied = await runClient('curl', ['-q', '-sS', '-X', 'TRACE', '-w', '\n%{http_code}', 'http://api.internal/'], { http_proxy: h.sidecar.proxyUrl });
    assert.match(proxied.stdout, /"code":"ERR_PROXY_METHOD_NOT_ALLOWED"[^]*\n405$/);
    assert.equal(upstream.requests.length, 0);
    assert.equal(await metric(h.sidecar.adminUrl, 'sts_sidecar_proxy_requests_total', 'route="api",status_class="4xx"'), 2);
  });
});

describe('abandoned requests (issue 10 item 18)', () => {
  it('a client that disconnects mid-response is counted and logged as aborted, not 2xx', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = own(await startHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part of a response that never ends');
    }));
    const h = own(await startHarness({ ...subject, sts: { url: sts.tokenUrl }, routes: [{ name: 'slow', listen: '127.0.0.1:0', upstream: upstream.url }] }));
    const client = await RawClient.connect(Number(new URL(h.sidecar.routeUrls['slow']!).port));
    client.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n');
    await client.take((s) => s.includes('first part'));
    client.close();
    const aborted = () => metric(h.sidecar.adminUrl, 'sts_sidecar_proxy_requests_total', 'route="slow",status_class="aborted"');
    await eventually(async () => (await aborted()) === 1, { what: 'the aborted request to be counted' });
    assert.equal(await metric(h.sidecar.adminUrl, 'sts_sidecar_proxy_requests_total', 'route="slow",status_class="2xx"'), 0);
    assert.ok(parsedLogs(h.logs).some((l) => l['msg'] === 'proxied' && l['route'] === 'slow' && l['status'] === 'aborted'));
  });
});

/**
 * Issue 4, what the forward proxy must and must not do with a destination: unmatched ones
 * pass untouched and without a token (or are refused under `forward.unmatched: deny`),
 * redirects go back to the app, Proxy-* headers are consumed, route hosts match ports the
 * way the README says, and a matched request without a token fails closed. Clients are curl
 * and raw sockets (for what curl will not send), upstreams are real loopback servers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvHttpProxyAgent, request } from 'undici';
import { createCertificateAuthority } from '../src/pki/certificates.js';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { closeAfter, parsedLogs, startHarness, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import {
  bearer,
  completeResponse,
  makeUpstreamPki,
  RawClient,
  runClient,
  startRecordingServer,
  type RecordingServer,
  type UpstreamPki,
} from './helpers/forward.js';

describe('forward proxy policy', () => {
  let dir: TempDir;
  let pki: UpstreamPki;
  let sts: FakeSts; // for the tunnel-mode sidecar
  let denySts: FakeSts; // for the deny-mode sidecar, so each token names its sidecar
  let orders: RecordingServer;
  let redirector: RecordingServer;
  let routedTls: RecordingServer; // routed by host:port, no intercept
  let svcDefault: RecordingServer;
  let svc8080: RecordingServer;
  let other: RecordingServer; // no route names it
  let otherTls: RecordingServer; // no route names it, own certificate
  let tunnel: SidecarHarness; // forward.unmatched: tunnel (the default)
  let deny: SidecarHarness; // forward.unmatched: deny
  const tokenFor = (audience: string, from: FakeSts = sts) => from.issued[from.requests.findIndex((p) => p.get('audience') === audience)];
  const issuedTokens = () => [...sts.issued, ...denySts.issued];
  const sawNoToken = (server: RecordingServer) =>
    server.requests.every((r) => !issuedTokens().some((t) => JSON.stringify(r.rawHeaders).includes(t)));

  before(async () => {
    dir = await tempDir();
    pki = await makeUpstreamPki(dir.path);
    sts = await startFakeSts({ prefix: 'tunnel' });
    denySts = await startFakeSts({ prefix: 'deny' });
    other = await startRecordingServer();
    otherTls = await startRecordingServer({ tls: pki.server });
    orders = await startRecordingServer();
    redirector = await startRecordingServer({
      respond: (_req, res) => {
        res.writeHead(302, { location: `${other.url}/landed`, 'content-length': '0' });
        res.end();
      },
    });
    routedTls = await startRecordingServer({ tls: pki.server });
    svcDefault = await startRecordingServer();
    svc8080 = await startRecordingServer();
    const config = (unmatched: 'tunnel' | 'deny', from: FakeSts) => ({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: from.tokenUrl },
      forward: { unmatched },
      routes: [
        { name: 'orders', host: 'orders.internal', upstream: orders.url, audience: 'orders' },
        { name: 'redirector', host: 'redirect.internal', upstream: redirector.url, audience: 'redirector' },
        { name: 'opaque', host: `127.0.0.1:${routedTls.port}`, upstream: routedTls.url, ca: pki.caFile, audience: 'opaque' },
        { name: 'svc', host: 'svc.internal', upstream: svcDefault.url, audience: 'svc' },
        { name: 'svc-8080', host: 'svc.internal:8080', upstream: svc8080.url, audience: 'svc-8080' },
      ],
    });
    tunnel = await startHarness(config('tunnel', sts));
    deny = await startHarness(config('deny', denySts));
  });
  after(async () => {
    await Promise.all([tunnel?.close(), deny?.close()]);
    await Promise.all([orders, redirector, routedTls, svcDefault, svc8080, other, otherTls, sts, denySts].map((s) => s?.close()));
    await dir?.cleanup();
  });

  it("an unmatched http destination gets the request without a token; the app's own Authorization passes, Proxy-Authorization and Proxy-Connection do not", async () => {
    const proxyWithCredentials = tunnel.sidecar.proxyUrl.replace('http://', 'http://app:proxy-password@');
    const r = await runClient('curl', ['-q', '-sS', '-w', '\n%{http_code}', '-H', 'Authorization: Basic YXBwOmFwcA==', `${other.url}/free?q=1`], {
      http_proxy: proxyWithCredentials,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\n200$/);
    const seen = other.requests.at(-1)!;
    assert.equal(seen.url, '/free?q=1');
    assert.equal(seen.headers.authorization, 'Basic YXBwOmFwcA==');
    assert.equal(seen.headers.host, new URL(other.url).host);
    assert.equal(seen.headers['proxy-authorization'], undefined);
    assert.equal(seen.headers['proxy-connection'], undefined);
    assert.ok(sawNoToken(other));

    // The same two headers are consumed on a routed request too, where the token replaces the app's value.
    const routed = await runClient('curl', ['-q', '-sS', '-o', '/dev/null', 'http://orders.internal/routed'], { http_proxy: proxyWithCredentials });
    assert.equal(routed.code, 0, routed.stderr);
    const atOrders = orders.requests.at(-1)!;
    assert.equal(atOrders.headers.authorization, bearer(tokenFor('orders')));
    assert.equal(atOrders.headers['proxy-authorization'], undefined);
    assert.equal(atOrders.headers['proxy-connection'], undefined);
  });

  it("an unmatched https destination is tunnelled untouched: curl verifies the upstream's own certificate, no token is added", async () => {
    const r = await runClient('curl', ['-q', '-sS', '--cacert', pki.caFile, `${otherTls.url}/secret`], { https_proxy: tunnel.sidecar.proxyUrl });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { url: '/secret', authorization: null, tls: true });
    assert.ok(sawNoToken(otherTls));
  });

  it('under forward.unmatched: deny the same destinations get 403 ERR_FORWARD_DENIED and nothing reaches them', async () => {
    const beforeOther = other.requests.length;
    const beforeTls = otherTls.requests.length;
    const plain = await runClient('curl', ['-q', '-sS', '-i', `${other.url}/free`], { http_proxy: deny.sidecar.proxyUrl });
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(plain.stdout, /\r\nx-sts-sidecar-error: ERR_FORWARD_DENIED\r\n/);
    const body = JSON.parse(plain.stdout.slice(plain.stdout.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
    assert.equal(body['code'], 'ERR_FORWARD_DENIED');
    assert.equal(body['route'], null);

    const tls = await runClient('curl', ['-q', '-sS', '-w', '%{http_connect}', '--cacert', pki.caFile, `${otherTls.url}/secret`], {
      https_proxy: deny.sidecar.proxyUrl,
    });
    assert.equal(tls.code, 56, tls.stderr); // curl: failure receiving network data (CONNECT refused)
    assert.equal(tls.stdout, '403');
    assert.equal(other.requests.length, beforeOther);
    assert.equal(otherTls.requests.length, beforeTls);

    // Routed destinations still work under deny.
    const routed = await runClient('curl', ['-q', '-sS', '-o', '/dev/null', '-w', '%{http_code}', 'http://orders.internal/still'], { http_proxy: deny.sidecar.proxyUrl });
    assert.equal(routed.stdout, '200');
    assert.equal(orders.requests.at(-1)!.headers.authorization, bearer(tokenFor('orders', denySts)));
  });

  it('a redirect to another host is returned to the app, not followed; a client that follows it sends no token there', async () => {
    const beforeOther = other.requests.length;
    const r = await runClient('curl', ['-q', '-sS', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', 'http://redirect.internal/go'], {
      http_proxy: tunnel.sidecar.proxyUrl,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `302 ${other.url}/landed`);
    assert.equal(redirector.requests.at(-1)!.headers.authorization, bearer(tokenFor('redirector')));
    assert.equal(other.requests.length, beforeOther, 'the sidecar did not follow the redirect');

    const followed = await runClient('curl', ['-q', '-sS', '-L', '-o', '/dev/null', '-w', '%{http_code}', 'http://redirect.internal/go'], {
      http_proxy: tunnel.sidecar.proxyUrl,
    });
    assert.equal(followed.stdout, '200');
    assert.equal(other.requests.length, beforeOther + 1);
    assert.equal(other.requests.at(-1)!.url, '/landed');
    assert.equal(other.requests.at(-1)!.headers.authorization, undefined);
  });

  it('a routed https destination without intercept is tunnelled untouched and a log line says no token could be added', async () => {
    const r = await runClient('curl', ['-q', '-sS', '--cacert', pki.caFile, `${routedTls.url}/opaque`], { https_proxy: tunnel.sidecar.proxyUrl });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { url: '/opaque', authorization: null, tls: true });
    const line = parsedLogs(tunnel.logs).find((l) => l['route'] === 'opaque' && /no token could be added/.test(String(l['msg'])));
    assert.ok(line, 'expected the "no token could be added" log line');
    assert.equal(line['level'], 'warn');
  });

  it("a route host without a port matches the scheme's default port only; one with a port matches that port", async () => {
    const proxy = deny.sidecar.proxyUrl;
    const status = async (url: string) =>
      (await runClient('curl', ['-q', '-sS', '-o', '/dev/null', '-w', '%{http_code}', url], { http_proxy: proxy })).stdout;
    assert.equal(await status('http://svc.internal/a'), '200');
    assert.equal(await status('http://SVC.internal:80/b'), '200');
    assert.equal(await status('http://svc.internal:8080/c'), '200');
    assert.equal(await status('http://svc.internal:9090/d'), '403');
    const svc = bearer(tokenFor('svc', denySts));
    assert.deepEqual(svcDefault.requests.map((r) => [r.url, r.headers.authorization]), [['/a', svc], ['/b', svc]]);
    assert.deepEqual(svc8080.requests.map((r) => [r.url, r.headers.authorization]), [['/c', bearer(tokenFor('svc-8080', denySts))]]);
  });

  it('RFC 9110 9.3.6: an HTTP/1.0 CONNECT without Host (as python urllib sends it) is accepted; the CONNECT authority, not the inner Host, picks the route', async (t) => {
    // First, what python's urllib really sends to a proxy for https (captured, not assumed).
    const captured = await captureConnect(t);
    await runClient('python3', ['-c', "import urllib.request; urllib.request.urlopen('https://payments.internal/', timeout=3)"], {
      https_proxy: `http://127.0.0.1:${captured.port}`,
    });
    const head = await captured.first;
    assert.match(head, /^CONNECT payments\.internal:443 HTTP\/1\.0\r\n/);
    assert.doesNotMatch(head, /\r\nhost:/i);

    const client = await RawClient.connect(Number(new URL(tunnel.sidecar.proxyUrl).port));
    t.after(() => client.close());
    client.write('CONNECT orders.internal:80 HTTP/1.0\r\n\r\n');
    assert.match(await client.take((s) => s.includes('\r\n\r\n')), /^HTTP\/1\.1 200 /);
    client.write('GET /raw HTTP/1.1\r\nHost: evil.example\r\n\r\n');
    const response = await client.take(completeResponse);
    assert.match(response, /^HTTP\/1\.1 200 /);
    const seen = orders.requests.at(-1)!;
    assert.equal(seen.url, '/raw');
    assert.equal(seen.headers.authorization, bearer(tokenFor('orders')));
    assert.equal(seen.headers.host, new URL(orders.url).host);

    // A port-qualified route through a CONNECT tunnel carrying plain HTTP.
    const second = await RawClient.connect(Number(new URL(tunnel.sidecar.proxyUrl).port));
    t.after(() => second.close());
    second.write('CONNECT svc.internal:8080 HTTP/1.1\r\nHost: svc.internal:8080\r\nProxy-Authorization: Basic YTpi\r\n\r\n');
    await second.take((s) => s.includes('\r\n\r\n'));
    second.write('GET /tunnelled HTTP/1.1\r\nHost: svc.internal:8080\r\n\r\n');
    assert.match(await second.take(completeResponse), /^HTTP\/1\.1 200 /);
    assert.deepEqual(
      [svc8080.requests.at(-1)!.url, svc8080.requests.at(-1)!.headers.authorization, svc8080.requests.at(-1)!.headers['proxy-authorization']],
      ['/tunnelled', bearer(tokenFor('svc-8080')), undefined],
    );
  });

  it('targets the proxy cannot use get 400 ERR_FORWARD_BAD_TARGET', async (t) => {
    const port = Number(new URL(tunnel.sidecar.proxyUrl).port);
    for (const head of [
      'CONNECT orders.internal HTTP/1.1\r\nHost: orders.internal\r\n\r\n', // no port (RFC 9112 3.2.3)
      'CONNECT orders.internal:99999 HTTP/1.1\r\nHost: orders.internal\r\n\r\n',
      'GET ftp://orders.internal/file HTTP/1.1\r\nHost: orders.internal\r\n\r\n',
      'GET http://user@orders.internal/ HTTP/1.1\r\nHost: orders.internal\r\n\r\n', // userinfo (RFC 9110 4.2.4)
    ]) {
      const client = await RawClient.connect(port);
      t.after(() => client.close());
      client.write(head);
      const response = await client.take(completeResponse);
      assert.match(response, /^HTTP\/1\.1 400 Bad Request\r\n/, head);
      assert.match(response, /"code":"ERR_FORWARD_BAD_TARGET"/, head);
    }
  });
});

describe('forward proxy and upgrades', () => {
  it('a WebSocket-style upgrade to a routed destination gets the token, in absolute-form and inside a CONNECT tunnel', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const seen: Array<string | undefined> = [];
    const upstream = createHttpServer();
    upstream.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      seen.push(req.headers.authorization);
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
      socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    t.after(() => upstream.close());
    const h = own(
      await startHarness({
        subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
        sts: { url: sts.tokenUrl },
        routes: [{ name: 'ws', host: 'ws.internal', upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` }],
      }),
    );
    const port = Number(new URL(h.sidecar.proxyUrl).port);
    const upgrade = 'Connection: Upgrade\r\nUpgrade: echo\r\n\r\n';

    const absolute = await RawClient.connect(port);
    t.after(() => absolute.close());
    absolute.write(`GET http://ws.internal/socket HTTP/1.1\r\nHost: ws.internal\r\n${upgrade}`);
    assert.match(await absolute.take((s) => s.includes('\r\n\r\n')), /^HTTP\/1\.1 101 /);
    absolute.write('ping');
    assert.equal(await absolute.take((s) => s.includes('echo:ping')), 'echo:ping');

    const tunnelled = await RawClient.connect(port);
    t.after(() => tunnelled.close());
    tunnelled.write('CONNECT ws.internal:80 HTTP/1.1\r\nHost: ws.internal:80\r\n\r\n');
    await tunnelled.take((s) => s.includes('\r\n\r\n'));
    tunnelled.write(`GET /socket HTTP/1.1\r\nHost: ws.internal\r\n${upgrade}`);
    assert.match(await tunnelled.take((s) => s.includes('\r\n\r\n')), /^HTTP\/1\.1 101 /);
    tunnelled.write('pong');
    assert.equal(await tunnelled.take((s) => s.includes('echo:pong')), 'echo:pong');
    assert.deepEqual(seen, [bearer(sts.issued[0]), bearer(sts.issued[0])]);

    // The destination decides, not Host: an unrouted absolute-form upgrade naming a routed Host is refused.
    const elsewhere = await RawClient.connect(port);
    t.after(() => elsewhere.close());
    elsewhere.write(`GET http://elsewhere.example/socket HTTP/1.1\r\nHost: ws.internal\r\n${upgrade}`);
    assert.match(await elsewhere.take(completeResponse), /^HTTP\/1\.1 404 [^]*"code":"ERR_ROUTE_NOT_FOUND"/);
    assert.equal(seen.length, 2);
  });
});

describe('forward proxy fails closed and uses a CA from files', () => {
  it('when no token can be had, a routed destination gets 503 ERR_TOKEN_UNAVAILABLE (absolute-form and in a tunnel) and nothing is forwarded', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    sts.mode = 'down-503';
    const upstream = own(await startRecordingServer());
    const h = own(
      await startHarness(
        {
          subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
          sts: { url: sts.tokenUrl },
          cache: { retryInitialDelaySeconds: 5 },
          routes: [{ name: 'orders', host: 'orders.internal', upstream: upstream.url, lazy: true }],
        },
        { waitForTokens: false },
      ),
    );
    const r = await runClient('curl', ['-q', '-sS', 'http://orders.internal/x'], { http_proxy: h.sidecar.proxyUrl });
    const body = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(body['code'], 'ERR_TOKEN_UNAVAILABLE');
    assert.equal(body['route'], 'orders');

    const agent = new EnvHttpProxyAgent({ httpProxy: h.sidecar.proxyUrl, noProxy: '' });
    t.after(() => agent.close());
    const res = await request('http://orders.internal/y', { dispatcher: agent });
    assert.equal(res.statusCode, 503);
    assert.equal(((await res.body.json()) as Record<string, unknown>)['code'], 'ERR_TOKEN_UNAVAILABLE');
    assert.equal(upstream.requests.length, 0);
  });

  it('forward.ca from PEM files signs the leaves; on an intercepted host a path no route serves goes to the real destination, whose certificate the sidecar checks', async (t) => {
    const own = closeAfter(t);
    const dir = await tempDir();
    t.after(() => dir.cleanup());
    const pki = await makeUpstreamPki(dir.path);
    const sts = own(await startFakeSts());
    const api = own(await startRecordingServer({ tls: pki.server }));
    const ca = createCertificateAuthority({ commonName: 'mounted interception CA' });
    await writeFile(join(dir.path, 'ca.crt'), ca.certPem);
    await writeFile(join(dir.path, 'ca.key'), ca.keyPem);
    const h = own(
      await startHarness({
        subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
        sts: { url: sts.tokenUrl },
        forward: { ca: { cert: join(dir.path, 'ca.crt'), key: join(dir.path, 'ca.key') } },
        routes: [{ name: 'api', host: `127.0.0.1:${api.port}`, pathPrefix: '/api', intercept: true, upstream: api.url, ca: pki.caFile }],
      }),
    );
    const env = { https_proxy: h.sidecar.proxyUrl };
    const routed = await runClient('curl', ['-q', '-sS', '-v', '--cacert', join(dir.path, 'ca.crt'), `${api.url}/api/orders`], env);
    assert.equal(routed.code, 0, routed.stderr);
    assert.match(routed.stderr, /issuer: CN=mounted interception CA/);
    assert.deepEqual(JSON.parse(routed.stdout), { url: '/api/orders', authorization: bearer(sts.issued[0]), tls: true });
    assert.ok(!parsedLogs(h.logs).some((l) => /generated the forward-proxy interception CA/.test(String(l['msg']))));

    // /other matches no route: forwarded without a token to 127.0.0.1:port itself, verified
    // against the system's trust, which does not know the test CA.
    const unrouted = await runClient('curl', ['-q', '-sS', '--cacert', join(dir.path, 'ca.crt'), `${api.url}/other`], env);
    assert.equal(unrouted.code, 0, unrouted.stderr);
    assert.equal((JSON.parse(unrouted.stdout) as Record<string, unknown>)['code'], 'ERR_UPSTREAM_TLS');
    assert.deepEqual(api.requests.map((r) => r.url), ['/api/orders']);
  });
});

/** A TCP server that records the first bytes a client sends, then hangs up. */
async function captureConnect(t: { after(fn: () => unknown): void }): Promise<{ port: number; first: Promise<string> }> {
  let resolve!: (text: string) => void;
  const first = new Promise<string>((r) => (resolve = r));
  const server: Server = createServer((socket) => {
    socket.once('data', (d: Buffer) => {
      resolve(d.toString('latin1'));
      socket.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  return { port: (server.address() as AddressInfo).port, first };
}

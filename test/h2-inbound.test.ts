/**
 * Issue 12, the inbound side: apps speaking HTTP/2 to the sidecar. Cleartext HTTP/2 with prior
 * knowledge (RFC 9113 3.3) beside HTTP/1.1 on a route's port and on the shared port (routed by
 * :authority), HTTP/2 inside CONNECT tunnels (cleartext, and `h2` on intercepted TLS), the
 * concurrent-stream bound, and gRPC-shaped answers for what the sidecar fails itself, seen by
 * grpc-js. Clients are curl, node:http2 and grpc-js; upstreams speak HTTP/1.1.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { request as h1request } from 'node:http';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { issueToken, oauthError, startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { startHarness, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { bearer, makeUpstreamPki, runClient, startRecordingServer, type RecordingServer } from './helpers/forward.js';
import { callError, createEchoClient } from './helpers/grpc-client.js';
import { eventually } from './helpers/eventually.js';

const portOf = (url: string) => Number(new URL(url).port);

function openTunnel(proxyPort: number, authority: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const req = h1request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: authority });
    req.once('connect', (res, socket) => (res.statusCode === 200 ? resolve(socket) : reject(new Error(`CONNECT ${res.statusCode}`))));
    req.once('error', reject);
    req.end();
  });
}

/** One GET on an HTTP/2 session: status, headers and body. */
function h2get(session: ClientHttp2Session, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ...headers });
    let body = '';
    let head: IncomingHttpHeaders = {};
    stream.setEncoding('utf8');
    stream.on('response', (h) => (head = h));
    stream.on('data', (d: string) => (body += d));
    stream.on('end', () => resolve({ status: Number(head[':status']), headers: head, body }));
    stream.on('error', reject);
  });
}

describe('HTTP/2 from apps (issue 12, inbound)', () => {
  let dir: TempDir;
  let sts: FakeSts;
  let orders: RecordingServer;
  let payments: RecordingServer;
  let h: SidecarHarness;
  let sidecarCa: string;
  let release: () => void = () => {};
  const tokenFor = (audience: string) => sts.issued[sts.requests.findIndex((p) => p.get('audience') === audience)];

  before(async () => {
    dir = await tempDir();
    const pki = await makeUpstreamPki(dir.path);
    sts = await startFakeSts();
    // The route "locked" gets no token: the STS refuses its audience.
    sts.answer = (res, request, s) => (request.form.get('audience') === 'locked' ? oauthError('invalid_target')(res, request, s) : issueToken(res, request, s));
    orders = await startRecordingServer({
      respond: (req, res, socket) => {
        // /hold answers only once the test releases it: streams stay in flight.
        const answer = () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ url: req.url, authorization: req.headers.authorization ?? null, tls: 'encrypted' in socket }));
        };
        if (req.url.startsWith('/hold')) {
          const previous = release;
          release = () => {
            previous();
            answer();
          };
        } else answer();
      },
    });
    payments = await startRecordingServer({ tls: pki.server });
    sidecarCa = join(dir.path, 'sidecar-ca.pem');
    h = await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      forward: { caCertOut: sidecarCa },
      limits: { maxRequestsInFlightPerConnection: 2 },
      routes: [
        { name: 'orders', host: 'orders.internal', listen: '127.0.0.1:0', upstream: orders.url, audience: 'orders' },
        { name: 'payments', host: 'payments.internal', intercept: true, upstream: payments.url, ca: pki.caFile, audience: 'payments' },
        { name: 'locked', host: 'locked.internal', listen: '127.0.0.1:0', upstream: orders.url, audience: 'locked', lazy: true },
        { name: 'down', host: 'down.internal', listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:1', audience: 'orders', upstreamTimeoutSeconds: 2 },
      ],
    });
  });
  after(async () => {
    await h?.close();
    await Promise.all([orders?.close(), payments?.close(), sts?.close()]);
    await dir?.cleanup();
  });

  it('curl --http2-prior-knowledge to a route port reaches the HTTP/1.1 upstream with the token', async () => {
    const r = await runClient('curl', ['-q', '-sS', '--http2-prior-knowledge', '-w', '\n%{http_version} %{http_code}', `${h.sidecar.routeUrls['orders']}/o?x=1`]);
    assert.equal(r.code, 0, r.stderr);
    const [body, status] = r.stdout.split('\n');
    assert.equal(status, '2 200');
    assert.deepEqual(JSON.parse(body!), { url: '/o?x=1', authorization: bearer(tokenFor('orders')), tls: false });
    const seen = orders.requests.at(-1)!;
    assert.equal(seen.headers.host, new URL(orders.url).host);
    assert.ok(!seen.rawHeaders.some((n) => n.startsWith(':')), 'no pseudo-header reaches an HTTP/1.1 upstream');
  });

  it('curl --http2-prior-knowledge to the shared port: routed by :authority (no Host header)', async () => {
    const port = portOf(h.sidecar.proxyUrl);
    const r = await runClient('curl', ['-q', '-sS', '--http2-prior-knowledge', '--resolve', `orders.internal:${port}:127.0.0.1`, '-w', '\n%{http_version} %{http_code}', `http://orders.internal:${port}/shared`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\n2 200$/);
    assert.equal(orders.requests.at(-1)!.url, '/shared');
    assert.equal(orders.requests.at(-1)!.headers.authorization, bearer(tokenFor('orders')));
  });

  it('an HTTP/1.1 client on the same ports is served as before', async () => {
    const r = await runClient('curl', ['-q', '-sS', '--http1.1', '-w', '\n%{http_version} %{http_code}', `${h.sidecar.routeUrls['orders']}/h1`]);
    assert.match(r.stdout, /\n1\.1 200$/, r.stderr);
    const shared = await runClient('curl', ['-q', '-sS', '-H', 'Host: orders.internal', '-w', '\n%{http_version} %{http_code}', `${h.sidecar.proxyUrl}/h1`]);
    assert.match(shared.stdout, /\n1\.1 200$/, shared.stderr);
  });

  it('h2c inside a CONNECT tunnel (what gRPC clients behind http_proxy send) reaches the route', async () => {
    const socket = await openTunnel(portOf(h.sidecar.proxyUrl), 'orders.internal:80');
    const session = h2connect('http://orders.internal', { createConnection: () => socket });
    try {
      const r = await h2get(session, '/in-tunnel');
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { url: '/in-tunnel', authorization: bearer(tokenFor('orders')), tls: false });
    } finally {
      session.close();
    }
  });

  it('intercepted TLS negotiates h2 with an h2-only client and injects the token', async () => {
    const socket = await openTunnel(portOf(h.sidecar.proxyUrl), 'payments.internal:443');
    const ca = await readFile(sidecarCa, 'utf8');
    const session = h2connect('https://payments.internal', {
      createConnection: () => tlsConnect({ socket, servername: 'payments.internal', ca, ALPNProtocols: ['h2'] }),
    });
    try {
      const r = await h2get(session, '/pay');
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { url: '/pay', authorization: bearer(tokenFor('payments')), tls: true });
    } finally {
      session.close();
    }
  });

  it('curl --http2 through the forward proxy (intercepted, h2 negotiated) still gets 200', async () => {
    const r = await runClient('curl', ['-q', '-sS', '--http2', '--cacert', sidecarCa, '-w', '\n%{http_version} %{http_code}', 'https://payments.internal/curl'], { https_proxy: h.sidecar.proxyUrl });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\n2 200$/);
    assert.equal(JSON.parse(r.stdout.split('\n')[0]!).authorization, bearer(tokenFor('payments')));
  });

  it('streams past SETTINGS_MAX_CONCURRENT_STREAMS (maxRequestsInFlightPerConnection) are refused by the protocol, not served', async () => {
    const before = orders.requests.length;
    const session = h2connect(h.sidecar.routeUrls['orders']!);
    try {
      // Sent at once, before the sidecar's SETTINGS arrive: the client does not know the bound yet.
      const outcomes = [1, 2, 3, 4].map(
        (i) =>
          new Promise<string>((resolve) => {
            const stream = session.request({ ':path': `/hold/${i}` });
            stream.on('response', (hd) => resolve(String(hd[':status'])));
            stream.on('error', () => resolve(`rst ${stream.rstCode}`));
            stream.resume();
          }),
      );
      await eventually(() => orders.requests.length - before >= 2, { what: 'two requests held upstream' });
      release();
      const results = (await Promise.all(outcomes)).sort();
      assert.deepEqual(results, ['200', '200', `rst ${constants.NGHTTP2_REFUSED_STREAM}`, `rst ${constants.NGHTTP2_REFUSED_STREAM}`]);
      assert.equal(orders.requests.length - before, 2);
    } finally {
      session.close();
    }
  });

  describe('gRPC-shaped errors (grpc-js)', () => {
    const trailerCode = (err: grpc.ServiceError) => err.metadata?.get('x-sts-sidecar-error')[0];

    it('no token for the route: UNAUTHENTICATED with x-sts-sidecar-error', async () => {
      const client = createEchoClient(`127.0.0.1:${portOf(h.sidecar.routeUrls['locked']!)}`);
      try {
        const err = await callError(client.unary({ message: 'hi' }));
        assert.equal(err.code, grpc.status.UNAUTHENTICATED);
        assert.equal(trailerCode(err), 'ERR_TOKEN_UNAVAILABLE');
      } finally {
        client.close();
      }
    });

    it('no route on the shared port: NOT_FOUND', async () => {
      const client = createEchoClient(`127.0.0.1:${portOf(h.sidecar.proxyUrl)}`, { channelOptions: { 'grpc.default_authority': 'nowhere.internal' } });
      try {
        const err = await callError(client.unary({ message: 'hi' }));
        assert.equal(err.code, grpc.status.NOT_FOUND);
        assert.equal(trailerCode(err), 'ERR_ROUTE_NOT_FOUND');
      } finally {
        client.close();
      }
    });

    it('an unreachable upstream: UNAVAILABLE', async () => {
      const client = createEchoClient(`127.0.0.1:${portOf(h.sidecar.routeUrls['down']!)}`);
      try {
        const err = await callError(client.unary({ message: 'hi' }));
        assert.equal(err.code, grpc.status.UNAVAILABLE);
        assert.equal(trailerCode(err), 'ERR_UPSTREAM_UNREACHABLE');
      } finally {
        client.close();
      }
    });

    it('a non-gRPC request still gets the JSON error', async () => {
      const session = h2connect(h.sidecar.routeUrls['locked']!);
      try {
        const r = await h2get(session, '/plain');
        assert.equal(r.status, 503);
        assert.equal(r.headers['content-type'], 'application/json');
        assert.equal(JSON.parse(r.body).code, 'ERR_TOKEN_UNAVAILABLE');
      } finally {
        session.close();
      }
    });

    it('metrics: protocol and grpc_status labels', async () => {
      const text = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
      assert.match(text, /sts_sidecar_proxy_requests_total\{route="locked",status_class="2xx",protocol="h2",grpc_status="unauthenticated",binding="none"\} 1/);
      assert.match(text, /sts_sidecar_proxy_requests_total\{route="unmatched",status_class="2xx",protocol="h2",grpc_status="not_found",binding="none"\} 1/);
      assert.match(text, /sts_sidecar_proxy_requests_total\{route="orders",status_class="2xx",protocol="h1",grpc_status="none",binding="none"\} [1-9]/);
      assert.match(text, /sts_sidecar_proxy_requests_total\{route="orders",status_class="2xx",protocol="h2",grpc_status="none",binding="none"\} [1-9]/);
    });
  });
});

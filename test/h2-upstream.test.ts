/**
 * HTTP/2 upstreams (issue 12), reached by HTTP/1.1 apps through the sidecar's HTTP/1.1
 * listeners: node:http2 servers in cleartext (h2c, prior knowledge) and over TLS (h2 only, with
 * certificates generated here), `auto` choosing by ALPN, the workload certificate over mTLS,
 * GOAWAY, trailers both ways, 4 MiB bodies under flow control, cancellation, and
 * `grpc-status: 16` dropping the token as a 401 does.
 */
import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import {
  constants,
  createSecureServer,
  createServer as createH2cServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders as Http2Headers,
  type SecureServerOptions,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { parseConfig } from '../src/config/load.js';
import { startDevSts } from '../src/devsts/index.js';
import { eventually } from './helpers/eventually.js';
import { startGrpcServer } from './helpers/grpc-server.js';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { closeAfter, startHarness, startUpstream, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { tempDir } from './helpers/loopback.js';
import { createTestPki, kubeletWrite, type TestPki } from './helpers/pki.js';

/** What an HTTP/2 upstream saw of one stream. */
interface SeenStream {
  readonly headers: Http2Headers;
  readonly body: Buffer;
  readonly trailers: Http2Headers | undefined;
  readonly alpn: string | undefined;
  readonly peerCn: string | undefined;
  readonly session: Http2Session;
}

type Answer = (stream: ServerHttp2Stream, seen: SeenStream) => void;

interface H2Upstream {
  readonly url: string;
  readonly seen: SeenStream[];
  readonly sessions: Set<Http2Session>;
  /** Streams reset by the peer, by RST code. */
  readonly resets: number[];
  answer: Answer;
  close(): Promise<void>;
}

/** 200, `x-echo` headers, the body back, then trailers (grpc-status 0 by default). */
const echo: Answer = (stream, seen) => {
  stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' }, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-upstream-trailer': 'done' }));
  stream.end(seen.body);
};

async function startH2Upstream(tls?: SecureServerOptions): Promise<H2Upstream> {
  const seen: SeenStream[] = [];
  const sessions = new Set<Http2Session>();
  const resets: number[] = [];
  const server: Http2Server = tls ? createSecureServer({ allowHTTP1: false, ...tls }) : createH2cServer();
  const upstream: H2Upstream = {
    url: '',
    seen,
    sessions,
    resets,
    answer: echo,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.on('error', () => {});
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: Http2Headers) => {
    stream.on('error', () => {});
    stream.on('close', () => {
      if (stream.rstCode !== constants.NGHTTP2_NO_ERROR) resets.push(stream.rstCode);
    });
    const chunks: Buffer[] = [];
    let trailers: Http2Headers | undefined;
    stream.on('trailers', (t: Http2Headers) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    const socket = stream.session?.socket as TLSSocket | undefined;
    // The session's socket is a proxy: call through it rather than probing it with `in`.
    const peer = tls ? socket?.getPeerCertificate() : undefined;
    const record = (): SeenStream => {
      const s: SeenStream = {
        headers,
        body: Buffer.concat(chunks),
        trailers,
        alpn: socket?.alpnProtocol || undefined,
        peerCn: peer && 'subject' in peer && peer.subject ? String(peer.subject.CN) : undefined,
        session: stream.session!,
      };
      seen.push(s);
      return s;
    };
    if (headers[':method'] === 'GET' || stream.endAfterHeaders || headers['x-answer-now'] !== undefined) upstream.answer(stream, record());
    else stream.once('end', () => upstream.answer(stream, record()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(upstream, { url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}` });
}

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly trailers: NodeJS.Dict<string>;
}

/** An HTTP/1.1 request with node:http; `trailers` makes the body chunked with trailers. */
function send(url: string, init: { method?: string; headers?: Record<string, string>; body?: Buffer | string; trailers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.trailers) {
      headers['transfer-encoding'] = 'chunked';
      headers['trailer'] = Object.keys(init.trailers).join(', ');
    }
    const req = httpRequest(url, { method: init.method ?? (init.body ? 'POST' : 'GET'), headers, agent: false }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), trailers: res.trailers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (init.body !== undefined) req.write(init.body);
    if (init.trailers) req.addTrailers(init.trailers);
    req.end();
  });
}

interface Setup {
  readonly sts: FakeSts;
  readonly sidecar: SidecarHarness;
  readonly routeUrl: string;
}

async function throughSidecar(t: { after(fn: () => unknown): void }, upstreamUrl: string, route: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<Setup> {
  const own = closeAfter(t);
  const sts = own(await startFakeSts());
  const sidecar = own(
    await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'walrus', host: 'walrus.internal', listen: '127.0.0.1:0', upstream: upstreamUrl, audience: 'walrus', ...route }],
      ...extra,
    }),
  );
  return { sts, sidecar, routeUrl: sidecar.sidecar.routeUrls['walrus']! };
}

function tlsServer(pki: TestPki, more: SecureServerOptions = {}): SecureServerOptions {
  return { key: pki.server.keyPem, cert: pki.server.certPem, ...more };
}

async function caFile(t: { after(fn: () => unknown): void }, pki: TestPki): Promise<string> {
  const dir = await tempDir();
  t.after(() => dir.cleanup());
  await kubeletWrite(dir.path, { 'ca.crt': pki.ca.certPem });
  return join(dir.path, 'ca.crt');
}

describe('routes[].upstreamProtocol', () => {
  const base = { subjectToken: { value: 'x' }, sts: { url: 'http://127.0.0.1:1/token' } };
  it('h2c with an https upstream is refused, naming the key', () => {
    assert.throws(
      () => parseConfig({ ...base, routes: [{ name: 'r', host: 'r.test', upstream: 'https://r.test', upstreamProtocol: 'h2c' }] }),
      (err: Error) => err.message.includes('routes[0].upstreamProtocol') || err.message.includes('routes.0.upstreamProtocol'),
    );
  });
  it('defaults to auto; h2c with an http upstream is accepted', () => {
    const config = parseConfig({ ...base, routes: [{ name: 'r', host: 'r.test', upstream: 'http://r.test' }, { name: 'q', host: 'q.test', upstream: 'http://q.test', upstreamProtocol: 'h2c' }] });
    assert.equal(config.routes[0]!.upstreamProtocol, 'auto');
    assert.equal(config.routes[1]!.upstreamProtocol, 'h2c');
  });
});

describe('an HTTP/1.1 app through the sidecar to an h2c upstream', () => {
  it('injects the token over HTTP/2, :authority from the route, te: trailers kept, trailers relayed both ways', async (t) => {
    const upstream = closeAfter(t)(await startH2Upstream());
    const { sts, routeUrl } = await throughSidecar(t, upstream.url, { upstreamProtocol: 'h2c' });
    const reply = await send(`${routeUrl}/orders?x=1`, {
      headers: { te: 'trailers', 'content-type': 'application/grpc', 'x-app': 'a', connection: 'keep-alive, x-hop', 'x-hop': 'drop-me' },
      body: 'hello',
      trailers: { 'x-request-trailer': 'sent' },
    });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'hello');
    assert.equal(reply.trailers['grpc-status'], '0');
    assert.equal(reply.trailers['x-upstream-trailer'], 'done');

    const seen = upstream.seen.at(-1)!;
    assert.equal(seen.headers[':method'], 'POST');
    assert.equal(seen.headers[':path'], '/orders?x=1');
    assert.equal(seen.headers[':scheme'], 'http');
    assert.equal(seen.headers[':authority'], new URL(upstream.url).host);
    assert.equal(seen.headers.authorization, `Bearer ${sts.issued[0]}`);
    assert.equal(seen.headers.te, 'trailers');
    assert.equal(seen.headers['x-app'], 'a');
    assert.equal(seen.headers['x-hop'], undefined);
    assert.equal(seen.headers.connection, undefined);
    assert.equal(seen.headers['transfer-encoding'], undefined);
    assert.equal(seen.trailers?.['x-request-trailer'], 'sent');
  });

  it('multiplexes requests onto one session', async (t) => {
    const upstream = closeAfter(t)(await startH2Upstream());
    const { routeUrl } = await throughSidecar(t, upstream.url, { upstreamProtocol: 'h2c' });
    const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => send(`${routeUrl}/${i}`)));
    assert.deepEqual(replies.map((r) => r.status), Array(8).fill(200));
    assert.equal(upstream.sessions.size, 1);
  });

  it('carries 4 MiB each way intact under flow control', async (t) => {
    const upstream = closeAfter(t)(await startH2Upstream());
    const { routeUrl } = await throughSidecar(t, upstream.url, { upstreamProtocol: 'h2c' });
    const big = randomBytes(4 << 20);
    const reply = await send(`${routeUrl}/big`, { body: big });
    assert.equal(reply.status, 200);
    assert.equal(upstream.seen.at(-1)!.body.length, big.length);
    assert.equal(createHash('sha256').update(reply.body).digest('hex'), createHash('sha256').update(big).digest('hex'));
  });

  it('after a GOAWAY, later requests go out on a fresh session', async (t) => {
    const upstream = closeAfter(t)(await startH2Upstream());
    upstream.answer = (stream, seen) => {
      const session = stream.session!;
      echo(stream, seen);
      stream.once('close', () => session.goaway(constants.NGHTTP2_NO_ERROR));
    };
    const { routeUrl } = await throughSidecar(t, upstream.url, { upstreamProtocol: 'h2c' });
    for (let i = 0; i < 4; i += 1) assert.equal((await send(`${routeUrl}/${i}`)).status, 200);
    assert.ok(upstream.sessions.size >= 2, `sessions: ${upstream.sessions.size}`);
  });

  it('an app that goes away cancels the upstream stream (RST_STREAM CANCEL); an upstream reset ends the app response', async (t) => {
    const upstream = closeAfter(t)(await startH2Upstream());
    upstream.answer = (stream) => {
      stream.respond({ ':status': 200 });
      stream.write('partial');
      // Never ends: the app's hang-up is the only way out.
    };
    const { routeUrl } = await throughSidecar(t, upstream.url, { upstreamProtocol: 'h2c' });
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${routeUrl}/stream`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.once('error', reject);
      req.end();
    });
    await eventually(() => upstream.resets.includes(constants.NGHTTP2_CANCEL), { what: 'the upstream stream was cancelled' });

    // The upstream goes away mid-answer while the app is still sending its body. (A node:http2
    // server's stream.close(code) sends END_STREAM before its RST_STREAM: a clean end to the peer.)
    upstream.answer = (stream) => {
      const session = stream.session!;
      stream.respond({ ':status': 200 });
      stream.write('partial', () => setImmediate(() => session.destroy()));
    };
    const cut = await new Promise<string>((resolve) => {
      const req = httpRequest(`${routeUrl}/reset`, { method: 'POST', agent: false, headers: { 'x-answer-now': '1', 'transfer-encoding': 'chunked' } }, (res) => {
        res.on('data', () => {});
        res.on('end', () => resolve('complete'));
        res.on('error', () => resolve('cut'));
      });
      req.on('error', () => resolve('cut'));
      req.write('still sending');
    });
    assert.equal(cut, 'cut', 'the app saw its response cut, not a complete one');
  });

  it('a stream that keeps talking outlives upstreamTimeoutSeconds; silence past limits.idleTimeoutSeconds cuts it; no head in time is 504', async (t) => {
    const upstream = closeAfter(t)(await startH2Upstream());
    const { routeUrl } = await throughSidecar(t, upstream.url, { upstreamProtocol: 'h2c', upstreamTimeoutSeconds: 0.2 }, { limits: { idleTimeoutSeconds: 0.4 } });
    upstream.answer = (stream) => {
      stream.respond({ ':status': 200 });
      let sent = 0;
      const tick = setInterval(() => {
        if (stream.destroyed) return clearInterval(tick);
        stream.write(`tick ${sent}\n`);
        sent += 1;
        if (sent === 8) {
          clearInterval(tick);
          stream.end();
        }
      }, 100);
    };
    const talking = await send(`${routeUrl}/talk`);
    assert.equal(talking.status, 200);
    assert.equal(talking.body.toString().split('\n').filter(Boolean).length, 8);

    upstream.answer = (stream) => {
      stream.respond({ ':status': 200 });
      stream.write('then silence');
    };
    const silent = await send(`${routeUrl}/silent`).then(() => 'complete', () => 'cut');
    assert.equal(silent, 'cut');

    upstream.answer = () => {}; // no head at all
    const headless = await send(`${routeUrl}/headless`);
    assert.equal(headless.status, 504);
    assert.equal(headless.headers['x-sts-sidecar-error'], 'ERR_UPSTREAM_TIMEOUT');
  });

  it('grpc-status 16 in the trailers drops the token: the next request carries a new one, once per window', async (t) => {
    const upstream = closeAfter(t)(await startH2Upstream());
    const { sts, routeUrl } = await throughSidecar(t, upstream.url, { upstreamProtocol: 'h2c' });
    const unauthenticated: Answer = (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '16', 'grpc-message': 'bad token' }));
      stream.end();
    };
    upstream.answer = unauthenticated;
    const first = await send(`${routeUrl}/svc/Method`, { headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: Buffer.alloc(5) });
    assert.equal(first.status, 200);
    assert.equal(first.trailers['grpc-status'], '16');
    assert.equal(upstream.seen.length, 1, 'gRPC is never retried');
    upstream.answer = echo;
    await send(`${routeUrl}/svc/Method`, { body: Buffer.alloc(5) });
    assert.equal(sts.issued.length, 2);
    assert.equal(upstream.seen.at(-1)!.headers.authorization, `Bearer ${sts.issued[1]}`);

    // A second UNAUTHENTICATED (Trailers-Only, in the head) within the window exchanges nothing.
    upstream.answer = (stream) => stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '16' }, { endStream: true });
    await send(`${routeUrl}/svc/Method`, { body: Buffer.alloc(5) });
    upstream.answer = echo;
    await send(`${routeUrl}/svc/Method`, { body: Buffer.alloc(5) });
    assert.equal(sts.issued.length, 2);
    assert.equal(upstream.seen.at(-1)!.headers.authorization, `Bearer ${sts.issued[1]}`);
  });
});

describe('TLS upstreams: auto chooses by ALPN', () => {
  it('an h2-only TLS upstream gets HTTP/2; an http/1.1-only one HTTP/1.1; response trailers reach the HTTP/1.1 app', async (t) => {
    const own = closeAfter(t);
    const pki = createTestPki();
    const ca = await caFile(t, pki);
    const h2only = own(await startH2Upstream(tlsServer(pki)));
    const h1only = own(
      await startUpstream({
        tls: { key: pki.server.keyPem, cert: pki.server.certPem, ALPNProtocols: ['http/1.1'] },
        respond: (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('h1');
          res.addTrailers({ 'x-h1-trailer': 'yes' });
          res.end();
        },
      }),
    );
    const sts = own(await startFakeSts());
    const sidecar = own(
      await startHarness({
        subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
        sts: { url: sts.tokenUrl },
        routes: [
          { name: 'two', host: 'two.internal', listen: '127.0.0.1:0', upstream: h2only.url, audience: 'two', ca },
          { name: 'one', host: 'one.internal', listen: '127.0.0.1:0', upstream: h1only.url, audience: 'one', ca },
        ],
      }),
    );
    for (let i = 0; i < 2; i += 1) {
      const two = await send(`${sidecar.sidecar.routeUrls['two']}/x`, { body: 'ping' });
      assert.equal(two.status, 200);
      assert.equal(two.body.toString(), 'ping');
      assert.equal(two.trailers['x-upstream-trailer'], 'done');
      const one = await send(`${sidecar.sidecar.routeUrls['one']}/y`);
      assert.equal(one.status, 200);
      assert.equal(one.body.toString(), 'h1');
      assert.equal(one.trailers['x-h1-trailer'], 'yes');
    }
    assert.equal(h2only.seen.length, 2);
    assert.equal(h2only.seen[0]!.alpn, 'h2');
    assert.equal(h2only.seen[0]!.headers[':scheme'], 'https');
    assert.match(String(h2only.seen[0]!.headers.authorization), /^Bearer /);
    assert.equal(h2only.sessions.size, 1);
    assert.equal(h1only.requests.length, 2);
    assert.match(String(h1only.requests[0]!.headers.authorization), /^Bearer /);
  });

  it('an h2 upstream requiring mTLS sees the workload certificate', async (t) => {
    const own = closeAfter(t);
    const pki = createTestPki();
    const alice = pki.client('alice');
    const dir = await tempDir();
    t.after(() => dir.cleanup());
    await kubeletWrite(dir.path, { 'tls.crt': alice.certPem, 'tls.key': alice.keyPem, 'ca.crt': pki.ca.certPem });
    const upstream = own(await startH2Upstream(tlsServer(pki, { ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true })));
    const { routeUrl } = await throughSidecar(t, upstream.url, {}, {
      identity: { cert: join(dir.path, 'tls.crt'), key: join(dir.path, 'tls.key'), ca: join(dir.path, 'ca.crt') },
    });
    const reply = await send(`${routeUrl}/whoami`);
    assert.equal(reply.status, 200);
    assert.equal(upstream.seen.at(-1)!.peerCn, 'alice');
    assert.equal(upstream.seen.at(-1)!.alpn, 'h2');
  });
});


/** One gRPC length-prefixed message (gRPC over HTTP/2, "Length-Prefixed-Message") of EchoRequest{message, response_size}. */
function grpcFrame(message: string, responseSize = 0): Buffer {
  const text = Buffer.from(message);
  const fields: Buffer[] = [Buffer.from([0x0a, text.length]), text];
  if (responseSize) fields.push(Buffer.from([0x10]), varint(responseSize));
  const body = Buffer.concat(fields);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

describe('gRPC to a grpc-js server (h2c) from an HTTP/1.1 app', () => {
  it("the seed's server admits the exchanged token; a 4 MiB reply and grpc-status arrive as chunked trailers", async (t) => {
    const own = closeAfter(t);
    const sts = own(await startDevSts());
    const server = own(await startGrpcServer());
    const sidecar = own(
      await startHarness({
        subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
        sts: { url: sts.tokenUrl },
        routes: [{ name: 'echo', host: 'echo.internal', listen: '127.0.0.1:0', upstream: `http://${server.address}`, audience: 'walrus', upstreamProtocol: 'h2c' }],
      }),
    );
    const url = `${sidecar.sidecar.routeUrls['echo']}/stssidecar.test.Echo/Unary`;
    const headers = { 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '10S' };
    const reply = await send(url, { headers, body: grpcFrame('hello', 4 << 20) });
    assert.equal(reply.status, 200);
    assert.equal(reply.trailers['grpc-status'], '0');
    assert.equal(reply.trailers['x-echo-trailer'], 'done');
    assert.equal(reply.headers['x-echo-method'], 'Unary');
    assert.ok(reply.body.length > 4 << 20, `reply of ${reply.body.length} bytes`);
    assert.equal(reply.body.readUInt32BE(1), reply.body.length - 5, 'one whole message');
    assert.equal(server.calls[0]!.metadata['authorization'], 'Bearer iamthewalrus');
  });

  it('UNAUTHENTICATED from the server reaches the app as grpc-status 16', async (t) => {
    const server = closeAfter(t)(await startGrpcServer());
    const { sts, routeUrl } = await throughSidecar(t, `http://${server.address}`, { upstreamProtocol: 'h2c' });
    const reply = await send(`${routeUrl}/stssidecar.test.Echo/Unary`, { headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: grpcFrame('x') });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['grpc-status'] ?? reply.trailers['grpc-status'], '16');
    // The refused token was dropped: the next call is made with a fresh exchange.
    await send(`${routeUrl}/stssidecar.test.Echo/Unary`, { headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: grpcFrame('x') });
    assert.equal(sts.issued.length, 2);
  });
});

/**
 * The seams of the one request pipeline (issue 11 item 3), with no STS and no real upstream:
 * a fake transport stands where undici (or, with issue 12, node:http2 sessions) carries the
 * request, and the app speaks HTTP/2 through node:http2's compatibility API, which the
 * pipeline's inbound shape must fit without an adapter.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, createServer, type ClientHttp2Session, type Http2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Dispatcher } from 'undici';
import type { CachedToken, TokenProvider } from '../src/cache/token-provider.js';
import { createLogger } from '../src/log/logger.js';
import { LogThrottle } from '../src/log/throttle.js';
import type { ProxyOutcome, ProxyRoute } from '../src/proxy/context.js';
import type { InboundRequest, InboundResponse } from '../src/proxy/inbound.js';
import { createPipeline, type Pipeline } from '../src/proxy/pipeline.js';
import type { OutboundRequest, ResponseController, ResponseHandler, UpgradeHandler, UpstreamTransport } from '../src/proxy/transport/types.js';
import type { Upstream } from '../src/proxy/upstream.js';

// Compile-time: both inbound APIs fit the pipeline's shape, and undici takes its handlers as they are.
const fits: Array<(a: IncomingMessage, b: ServerResponse, c: Http2ServerRequest, d: Http2ServerResponse, h: ResponseHandler) => void> = [
  (a, b, c, d, h) => {
    const inbound: Array<[InboundRequest, InboundResponse]> = [
      [a, b],
      [c, d],
    ];
    const undiciHandler: Dispatcher.DispatchHandler = h;
    void inbound;
    void undiciHandler;
  },
];
void fits;

type Answer = (request: OutboundRequest, handler: ResponseHandler, controller: ResponseController) => void;

/** A transport that records what it was given and answers as told. */
function fakeTransport(answers: Answer[]): UpstreamTransport & { readonly sent: OutboundRequest[] } {
  const sent: OutboundRequest[] = [];
  const controller: ResponseController = { aborted: false, pause() {}, resume() {}, abort() {} };
  return {
    sent,
    request(request, handler) {
      sent.push(request);
      handler.onRequestStart?.(controller, undefined);
      const answer = answers.shift();
      assert.ok(answer, 'an answer for every request');
      setImmediate(() => answer(request, handler, controller));
    },
    upgrade(_request: OutboundRequest, _handler: UpgradeHandler) {
      throw new Error('not in these tests');
    },
    close: async () => {},
  };
}

const ok = (status: number, body: string): Answer => (_r, handler, c) => {
  handler.onResponseStart?.(c, status, { 'content-type': 'text/plain', connection: 'keep-alive' }, 'OK');
  handler.onResponseData?.(c, Buffer.from(body));
  handler.onResponseEnd?.(c, {});
};

function routeOver(transport: UpstreamTransport): ProxyRoute {
  const upstream: Upstream = {
    origin: 'http://upstream.internal:8080',
    host: 'upstream.internal:8080',
    url: new URL('http://upstream.internal:8080/base'),
    target: (path) => `/base${path}`,
    transport,
    close: async () => {},
  };
  return { name: 'r', host: undefined, pathPrefix: '/', upstream, tokenHeader: 'authorization', tokenScheme: 'Bearer', replaceExisting: true, preserveHost: false };
}

describe('the pipeline over node:http2 compatibility requests and a fake transport', () => {
  const outcomes: Array<[string, ProxyOutcome]> = [];
  const retries: string[] = [];
  const invalidated: string[] = [];
  let issued = 0;
  const tokens = {
    getToken: async (): Promise<CachedToken> => ({ accessToken: `token-${++issued}`, identity: undefined }) as unknown as CachedToken,
    invalidate: (_route: string, accessToken: string) => (invalidated.push(accessToken), true),
  } as unknown as TokenProvider;
  const pipeline: Pipeline = createPipeline({
    tokens,
    logger: createLogger('silent'),
    failureLogs: new LogThrottle(),
    observer: { finished: (route, outcome) => void outcomes.push([route, outcome]), retriedAfter401: (route) => void retries.push(route) },
  });
  let route: ProxyRoute;
  let server: Http2Server;
  let client: ClientHttp2Session;

  before(async () => {
    server = createServer((req, res) => pipeline.request(route, req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });
  after(async () => {
    client.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const get = (path: string, method = 'GET', headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const stream = client.request({ ':method': method, ':path': path, ...headers });
      let status = 0;
      let body = '';
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => (body += chunk));
      stream.on('end', () => resolve({ status, body }));
      stream.on('error', reject);
      stream.end();
    });

  const finished = async (count: number) => {
    for (let i = 0; i < 100 && outcomes.length < count; i++) await new Promise((r) => setTimeout(r, 5));
    return outcomes.slice(0, count);
  };

  it('header policy: pseudo-headers and hop-by-hop fields dropped, Host from the route, the token added last', async () => {
    const transport = fakeTransport([ok(200, 'hello')]);
    route = routeOver(transport);
    const res = await get('/x?y=1', 'GET', { authorization: 'Bearer app-own', 'x-app': 'kept', te: 'trailers' });
    assert.deepEqual(res, { status: 200, body: 'hello' });
    const [sent] = transport.sent;
    assert.equal(sent!.method, 'GET');
    assert.equal(sent!.path, '/base/x?y=1');
    assert.equal(sent!.body, null);
    const names = sent!.headers.filter((_, i) => i % 2 === 0);
    assert.ok(!names.some((n) => n.startsWith(':')), names.join());
    assert.ok(!names.includes('te'));
    assert.deepEqual(sent!.headers.slice(-4), ['host', 'upstream.internal:8080', 'authorization', 'Bearer token-1']);
    assert.equal(sent!.headers.filter((v) => v === 'Bearer app-own').length, 0, 'the app\'s own token is replaced');
    assert.deepEqual(await finished(1), [['r', 200]]);
  });

  it('401 policy as a decorator: the 401 is reported, read away, and the request sent again with a fresh token', async () => {
    outcomes.length = 0;
    const transport = fakeTransport([ok(401, 'refused'), ok(200, 'second')]);
    route = routeOver(transport);
    const res = await get('/again');
    assert.deepEqual(res, { status: 200, body: 'second' });
    assert.equal(transport.sent.length, 2);
    assert.deepEqual(invalidated, ['token-2']);
    assert.deepEqual(retries, ['r']);
    assert.equal(transport.sent[1]!.headers.at(-1), 'Bearer token-3');
    assert.deepEqual(await finished(1), [['r', 200]]);
  });

  it('method policy: TRACE never reaches the transport', async () => {
    outcomes.length = 0;
    const transport = fakeTransport([]);
    route = routeOver(transport);
    const res = await get('/trace', 'TRACE');
    assert.equal(res.status, 405);
    assert.equal(transport.sent.length, 0);
    assert.deepEqual(await finished(1), [['r', 405]]);
  });

  it('an upstream failure becomes the sidecar\'s own answer, counted once', async () => {
    outcomes.length = 0;
    const transport = fakeTransport([(_r, handler, c) => handler.onResponseError?.(c, Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))]);
    route = routeOver(transport);
    const res = await get('/down');
    assert.equal(res.status, 502);
    assert.equal(JSON.parse(res.body).code, 'ERR_UPSTREAM_UNREACHABLE');
    assert.deepEqual(await finished(1), [['r', 502]]);
  });
});

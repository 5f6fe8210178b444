/**
 * Issue 12: gRPC through the sidecar, with a client and a server no one here wrote
 * (@grpc/grpc-js both sides). The app speaks h2c with prior knowledge to a route port
 * (RFC 9113 section 3.3) and sends no token; the sidecar exchanges the seed's
 * `iamtheeggman` at the reference STS for `iamthewalrus` and calls the seed's gRPC server,
 * which lets in only `authorization: Bearer iamthewalrus`, over h2c
 * (`upstreamProtocol: h2c`) and over TLS (`https://` with `ca`, `upstreamProtocol: auto`,
 * ALPN h2). The same checks as test/grpc-direct.test.ts, so a failure here is the
 * sidecar's, not the harness's: every call type, metadata, headers and trailers (text and
 * -bin), a deadline, cancellation in both directions, 4 MiB messages under flow control,
 * a stream outliving upstreamTimeoutSeconds; then the sidecar's own failures shaped as
 * gRPC answers them (gRPC over HTTP/2 spec: HTTP 200, grpc-status, grpc-message, as
 * Trailers-Only), and grpc-status 16 from the server dropping the token as a 401 does.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startDevSts, type DevSts } from '../src/devsts/index.js';
import { eventually } from './helpers/eventually.js';
import { TOKEN_TYPE_ACCESS, startHarness, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { createTestPki } from './helpers/pki.js';
import { closedPort } from './helpers/grpc-h2-upstream.js';
import { callError, createEchoClient, type EchoClient } from './helpers/grpc-client.js';
import { SEED_AUTHORIZATION, isPayload, payloadOf } from './helpers/grpc-proto.js';
import { startGrpcServer, type TestGrpcServer } from './helpers/grpc-server.js';
import {
  bidiPingPongCrosses,
  bigMessagesCross,
  chosenStatusesArrive,
  deadlineCancelsSlowCall,
  serverStreamCancellationReachesServer,
  unaryCancellationReachesServer,
} from './helpers/grpc-call-checks.js';

/** Short on purpose: the long-stream tests outlive it several times over. */
const UPSTREAM_TIMEOUT_SECONDS = 1;

const pki = createTestPki('grpc sidecar CA');
let dir: TempDir;
let caFile: string;
let sts: DevSts;
let h2cServer: TestGrpcServer;
let tlsServer: TestGrpcServer;
let sidecar: SidecarHarness;

/** The reference STS with the seed's one rule; an hour-long token so no refresh happens mid-test. */
function startSeedSts(): Promise<DevSts> {
  return startDevSts({ staticRules: [{ subjectToken: 'iamtheeggman', issuedToken: 'iamthewalrus', lifetimeSeconds: 3600 }] });
}

const subject = { subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS } };

/** `host:port` a grpc-js client dials for a route's dedicated listener. */
function routeTarget(h: SidecarHarness, route: string): string {
  const url = h.sidecar.routeUrls[route];
  assert.ok(url, `route ${route} has a listener`);
  return new URL(url).host;
}

before(async () => {
  dir = await tempDir('sts-sidecar-grpc-sidecar-');
  caFile = join(dir.path, 'ca.pem');
  await writeFile(caFile, pki.ca.certPem);
  sts = await startSeedSts();
  h2cServer = await startGrpcServer();
  tlsServer = await startGrpcServer({ tls: { cert: pki.server.certPem, key: pki.server.keyPem } });
  const down = await closedPort();
  sidecar = await startHarness({
    ...subject,
    sts: { url: sts.tokenUrl },
    routes: [
      { name: 'h2c', listen: '127.0.0.1:0', upstream: `http://${h2cServer.address}`, upstreamProtocol: 'h2c', upstreamTimeoutSeconds: UPSTREAM_TIMEOUT_SECONDS },
      { name: 'tls', listen: '127.0.0.1:0', upstream: `https://${tlsServer.address}`, ca: caFile, upstreamProtocol: 'auto', upstreamTimeoutSeconds: UPSTREAM_TIMEOUT_SECONDS },
      // On the shared port, chosen by :authority (RFC 9113 8.3.1: there is no Host).
      { name: 'by-authority', host: 'echo.internal', upstream: `http://${h2cServer.address}`, upstreamProtocol: 'h2c' },
      { name: 'down', listen: '127.0.0.1:0', upstream: `http://127.0.0.1:${down}`, upstreamProtocol: 'h2c' },
    ],
  });
});

after(async () => {
  await sidecar?.close();
  await Promise.all([h2cServer?.close(), tlsServer?.close(), sts?.close()]);
  await dir?.cleanup();
});

const upstreams = [
  { name: 'h2c', route: 'h2c', server: () => h2cServer },
  { name: 'TLS (auto: ALPN h2)', route: 'tls', server: () => tlsServer },
] as const;

for (const upstream of upstreams) {
  describe(`grpc-js -> sidecar route port (h2c) -> seed gRPC server over ${upstream.name}`, () => {
    let client: EchoClient;
    let server: TestGrpcServer;
    before(() => {
      server = upstream.server();
      // The app holds no token at all: the sidecar is its only source of iamthewalrus.
      client = createEchoClient(routeTarget(sidecar, upstream.route));
    });
    after(() => client.close());

    test('unary: the server sees iamthewalrus; request metadata, response headers and trailers (text and -bin) cross', async () => {
      const { value, headers, trailers } = await client.unary(
        { message: 'hello', payload: Buffer.from('abc') },
        { metadata: { 'x-request-id': 'r-1', 'x-trace-bin': Buffer.from([9, 8]) } },
      );
      assert.equal(value.message, 'hello');
      assert.equal(value.receivedBytes, 3);
      assert.equal(value.metadata['authorization'], SEED_AUTHORIZATION);
      assert.equal(value.metadata['x-request-id'], 'r-1');
      assert.deepEqual(headers.get('x-echo-method'), ['Unary']);
      assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
      assert.deepEqual(trailers.get('x-echo-trailer-bin'), [Buffer.from([0, 1, 2, 0xff])]);
      const recorded = server.calls.at(-1)!;
      // As for HTTP/1.1 (Host), the upstream sees its own authority, not the sidecar's port.
      assert.equal(recorded.authority, server.address);
      assert.equal(await recorded.outcome, 'ok');
    });

    test('an app that sends the seed\'s own iamtheeggman has it replaced by iamthewalrus', async () => {
      const { value } = await client.unary({ message: 'x' }, { metadata: { authorization: 'Bearer iamtheeggman' } });
      assert.equal(value.metadata['authorization'], SEED_AUTHORIZATION);
    });

    test('server streaming: every reply in order, then trailers', async () => {
      const { value, headers, trailers } = await client.serverStream({ message: 's', count: 5, responseSize: 10 });
      assert.deepEqual(value.map((r) => r.index), [0, 1, 2, 3, 4]);
      assert.ok(value.every((r) => r.message === 's' && isPayload(r.payload, 10)));
      assert.deepEqual(headers.get('x-echo-method'), ['ServerStream']);
      assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
    });

    test('client streaming: one reply summing every request', async () => {
      const { value, trailers } = await client.clientStream([{ message: 'a', payload: payloadOf(7) }, { message: 'b', payload: payloadOf(5) }, { message: 'c' }]);
      assert.equal(value.message, 'a,b,c');
      assert.equal(value.index, 3);
      assert.equal(value.receivedBytes, 12);
      assert.equal(value.metadata['authorization'], SEED_AUTHORIZATION);
      assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
    });

    test('bidirectional: ping-pong, each request sent only after the previous reply crossed the sidecar', async () => {
      await bidiPingPongCrosses(client);
    });

    test('a status the server chooses reaches the app with its message and trailers, for each call type', async () => {
      await chosenStatusesArrive(client);
    });

    test('deadline: grpc-timeout ends a slow call with DEADLINE_EXCEEDED and the server sees it cancelled', async () => {
      // Cancelled (not answered after its 5 s): the sidecar passed grpc-timeout or the client's RST_STREAM on.
      await deadlineCancelsSlowCall(client, server, { delayMs: 5_000, withinMs: 3_000 });
    });

    test('cancellation: the app cancels a server stream mid-way (RST_STREAM) and the server stops', async () => {
      await serverStreamCancellationReachesServer(client, server);
    });

    test('cancellation of a unary call while the server works on it', async () => {
      await unaryCancellationReachesServer(client, server);
    });

    test('4 MiB messages under flow control: unary both ways, a server stream of three, a client stream of two, bidi', async () => {
      await bigMessagesCross(client);
    });

    test(`streams lasting several times upstreamTimeoutSeconds (${UPSTREAM_TIMEOUT_SECONDS} s) are not cut`, async () => {
      // Replies 0.7 s apart: each gap under the timeout, the whole call about 2.8 s.
      const started = Date.now();
      const { value, trailers } = await client.serverStream({ count: 4, delayMs: 700 });
      assert.deepEqual(value.map((r) => r.index), [0, 1, 2, 3]);
      assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
      assert.ok(Date.now() - started > 2 * UPSTREAM_TIMEOUT_SECONDS * 1000, 'the stream outlived the timeout');
      const bidi = await client.bidi([0, 1, 2, 3].map(() => ({ delayMs: 700 })));
      assert.deepEqual(bidi.value.map((r) => r.index), [0, 1, 2, 3]);
    });
  });
}

describe('grpc-js -> sidecar shared port: the route is chosen by :authority', () => {
  test('an h2c call whose :authority names a route reaches it with iamthewalrus', async (t) => {
    const client = createEchoClient(new URL(sidecar.sidecar.proxyUrl).host, { channelOptions: { 'grpc.default_authority': 'echo.internal' } });
    t.after(() => client.close());
    const { value, trailers } = await client.unary({ message: 'by authority' });
    assert.equal(value.metadata['authorization'], SEED_AUTHORIZATION);
    assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
    assert.equal(h2cServer.calls.at(-1)!.authority, h2cServer.address);
  });

  test('an :authority no route names: NOT_FOUND shaped as gRPC, with x-sts-sidecar-error, and no call reaches a server', async (t) => {
    const client = createEchoClient(new URL(sidecar.sidecar.proxyUrl).host, { channelOptions: { 'grpc.default_authority': 'nowhere.internal' } });
    t.after(() => client.close());
    const seen = h2cServer.calls.length + tlsServer.calls.length;
    const err = await callError(client.unary({ message: 'lost' }, { deadlineMs: 5_000 }));
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.deepEqual(err.metadata.get('x-sts-sidecar-error'), ['ERR_ROUTE_NOT_FOUND']);
    assert.equal(h2cServer.calls.length + tlsServer.calls.length, seen);
  });
});

describe('the sidecar\'s own failures, as gRPC answers them (HTTP 200, grpc-status, grpc-message, x-sts-sidecar-error)', () => {
  test('the STS refuses the exchange: UNAUTHENTICATED with ERR_TOKEN_UNAVAILABLE; the server is never called', async (t) => {
    const refusing = await startSeedSts();
    t.after(() => refusing.close());
    // A subject token the seed's STS has no rule for: every exchange is refused.
    const h = await startHarness(
      {
        subjectToken: { value: 'iamnottheeggman', type: TOKEN_TYPE_ACCESS },
        sts: { url: refusing.tokenUrl },
        routes: [{ name: 'h2c', listen: '127.0.0.1:0', upstream: `http://${h2cServer.address}`, upstreamProtocol: 'h2c', lazy: true }],
      },
      { waitForTokens: false },
    );
    t.after(() => h.close());
    const client = createEchoClient(routeTarget(h, 'h2c'));
    t.after(() => client.close());
    const seen = h2cServer.calls.length;
    for (const call of [() => client.unary({}, { deadlineMs: 10_000 }), () => client.serverStream({ count: 2 }, { deadlineMs: 10_000 })]) {
      const err = await callError(call());
      assert.equal(err.code, grpc.status.UNAUTHENTICATED, err.message);
      assert.deepEqual(err.metadata.get('x-sts-sidecar-error'), ['ERR_TOKEN_UNAVAILABLE']);
      assert.ok(err.details.length > 0, 'grpc-message says why');
    }
    assert.equal(h2cServer.calls.length, seen);
    assert.ok(refusing.stats.errors >= 1, 'the STS was asked and refused');
  });

  test('the upstream is down: UNAVAILABLE with ERR_UPSTREAM_UNREACHABLE', async (t) => {
    const client = createEchoClient(routeTarget(sidecar, 'down'));
    t.after(() => client.close());
    const err = await callError(client.unary({}, { deadlineMs: 10_000 }));
    assert.equal(err.code, grpc.status.UNAVAILABLE, err.message);
    assert.deepEqual(err.metadata.get('x-sts-sidecar-error'), ['ERR_UPSTREAM_UNREACHABLE']);
  });
});

describe('grpc-status 16 from the server drops the token, as a 401 does', () => {
  test('one UNAUTHENTICATED: the next call carries a fresh exchange; more inside the re-exchange window exchange nothing', async (t) => {
    const ownSts = await startSeedSts();
    t.after(() => ownSts.close());
    const h = await startHarness({
      ...subject,
      sts: { url: ownSts.tokenUrl },
      routes: [{ name: 'h2c', listen: '127.0.0.1:0', upstream: `http://${h2cServer.address}`, upstreamProtocol: 'h2c' }],
      // The default window (5 s) written out, as the assertions below depend on it.
      limits: { reexchangeAfter401IntervalSeconds: 5 },
    });
    t.after(() => h.close());
    const client = createEchoClient(routeTarget(h, 'h2c'));
    t.after(() => client.close());

    await client.unary({ message: 'warm' });
    const initial = ownSts.stats.exchangesIssued;
    assert.equal(initial, 1, 'one exchange at start');

    // The server answers 16 (in trailers, after its headers): the app sees it as it is (a gRPC
    // call is a POST, never retried), and the sidecar drops the token.
    const first = await callError(client.unary({ statusCode: grpc.status.UNAUTHENTICATED }));
    assert.equal(first.code, grpc.status.UNAUTHENTICATED);
    const next = await client.unary({ message: 'after' });
    assert.equal(next.value.metadata['authorization'], SEED_AUTHORIZATION);
    await eventually(() => ownSts.stats.exchangesIssued === initial + 1, { what: 'one more exchange at the STS' });

    // Inside limits.reexchangeAfter401IntervalSeconds: no exchange storm, each 16 still reaches the app.
    for (let i = 0; i < 5; i++) assert.equal((await callError(client.unary({ statusCode: grpc.status.UNAUTHENTICATED }))).code, grpc.status.UNAUTHENTICATED);
    await client.unary({ message: 'still fine' });
    assert.equal(ownSts.stats.exchangesIssued, initial + 1, 'rate-limited: no exchange per UNAUTHENTICATED');
  });
});

/**
 * The gRPC harness itself, with no sidecar in between: grpc-js client against the
 * seed-faithful grpc-js server (test/helpers/grpc-server.ts), over h2c and over TLS.
 * Every call type, headers and trailers (text and binary), the seed's authorization rule,
 * a chosen error status, a deadline, cancellation seen by the server, and 4 MiB messages
 * both ways. The HTTP/2 tests through the sidecar assert the same things, so a failure
 * there is the sidecar's, not the harness's.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { createTestPki } from './helpers/pki.js';
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


const pki = createTestPki('grpc harness CA');
const transports = [
  { name: 'h2c', tls: undefined },
  { name: 'TLS', tls: { cert: pki.server.certPem, key: pki.server.keyPem } },
] as const;

for (const transport of transports) {
  describe(`gRPC harness over ${transport.name}: grpc-js client -> seed gRPC server`, () => {
    let server: TestGrpcServer;
    let client: EchoClient;
    const clientFor = (authorization?: string) =>
      createEchoClient(server.address, {
        ...(transport.tls ? { tls: { ca: pki.ca.certPem } } : {}),
        ...(authorization !== undefined ? { authorization } : {}),
      });
    before(async () => {
      server = await startGrpcServer(transport.tls ? { tls: transport.tls } : {});
      client = clientFor(SEED_AUTHORIZATION);
    });
    after(async () => {
      client.close();
      await server.close();
    });

    test('unary: reply, request metadata as the server saw it, response headers and trailers (text and -bin)', async () => {
      const { value, headers, trailers } = await client.unary({ message: 'hello', payload: Buffer.from('abc') }, { metadata: { 'x-request-id': 'r-1', 'x-trace-bin': Buffer.from([9, 8]) } });
      assert.equal(value.message, 'hello');
      assert.equal(value.receivedBytes, 3);
      assert.equal(value.metadata['authorization'], SEED_AUTHORIZATION);
      assert.equal(value.metadata['x-request-id'], 'r-1');
      assert.deepEqual(headers.get('x-echo-method'), ['Unary']);
      assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
      assert.deepEqual(trailers.get('x-echo-trailer-bin'), [Buffer.from([0, 1, 2, 0xff])]);
      const recorded = server.calls.at(-1)!;
      assert.equal(recorded.authority, server.address);
      assert.equal(await recorded.outcome, 'ok');
    });

    test('the seed rule: no token, or any token but iamthewalrus, is UNAUTHENTICATED (with trailers)', async () => {
      for (const authorization of [undefined, 'Bearer iamtheeggman', 'bearer iamthewalrus']) {
        const other = clientFor(authorization);
        try {
          const err = await callError(other.unary({ message: 'x' }));
          assert.equal(err.code, grpc.status.UNAUTHENTICATED, `${String(authorization)}: ${err.message}`);
          assert.deepEqual(err.metadata.get('x-echo-trailer'), ['done']);
          for (const call of [() => other.serverStream({ count: 2 }), () => other.clientStream([{}, {}]), () => other.bidi([{}, {}])]) {
            assert.equal((await callError(call())).code, grpc.status.UNAUTHENTICATED);
          }
        } finally {
          other.close();
        }
      }
    });

    test('server streaming: count replies in order, then trailers', async () => {
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
      assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
    });

    test('bidirectional: ping-pong, each request sent only after the previous reply', async () => {
      await bidiPingPongCrosses(client);
    });

    test('a status the server chooses arrives with its message and trailers, for each call type', async () => {
      await chosenStatusesArrive(client);
    });

    test('deadline: grpc-timeout ends a slow call with DEADLINE_EXCEEDED and the server sees it cancelled', async () => {
      await deadlineCancelsSlowCall(client, server, { delayMs: 10_000, withinMs: 5_000 });
    });

    test('cancellation: the client cancels a server stream mid-way (RST_STREAM) and the server stops', async () => {
      await serverStreamCancellationReachesServer(client, server);
    });

    test('cancellation of a unary call while the server works on it', async () => {
      await unaryCancellationReachesServer(client, server);
    });

    test('4 MiB messages: unary both ways, a server stream of three, a client stream of two, bidi', async () => {
      await bigMessagesCross(client);
    });
  });
}

describe('gRPC harness: transport mismatches fail as gRPC reports them', () => {
  test('an h2c client against the TLS server, and a TLS client against the h2c server: UNAVAILABLE', async (t) => {
    const tlsServer = await startGrpcServer({ tls: { cert: pki.server.certPem, key: pki.server.keyPem } });
    const h2cServer = await startGrpcServer();
    t.after(() => Promise.all([tlsServer.close(), h2cServer.close()]));
    const plain = createEchoClient(tlsServer.address, { authorization: SEED_AUTHORIZATION });
    const secure = createEchoClient(h2cServer.address, { authorization: SEED_AUTHORIZATION, tls: { ca: pki.ca.certPem } });
    try {
      assert.equal((await callError(plain.unary({}, { deadlineMs: 3000 }))).code, grpc.status.UNAVAILABLE);
      assert.equal((await callError(secure.unary({}, { deadlineMs: 3000 }))).code, grpc.status.UNAVAILABLE);
    } finally {
      plain.close();
      secure.close();
    }
  });
});

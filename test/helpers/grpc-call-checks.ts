/**
 * Checks of gRPC semantics run the same way against the seed server directly
 * (grpc-direct.test.ts, proving the harness) and through the sidecar (grpc-sidecar.test.ts).
 */
import * as assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { eventually } from './eventually.js';
import { callError, type EchoClient } from './grpc-client.js';
import { isPayload, payloadOf } from './grpc-proto.js';
import type { TestGrpcServer } from './grpc-server.js';

const MiB = 1024 * 1024;

/** A status the server chooses arrives with its message and trailers, for each call type. */
export async function chosenStatusesArrive(client: EchoClient): Promise<void> {
  const unary = await callError(client.unary({ statusCode: grpc.status.FAILED_PRECONDITION }));
  assert.equal(unary.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(unary.details, 'status 9 as requested');
  assert.deepEqual(unary.metadata.get('x-echo-trailer'), ['done']);
  const replies: number[] = [];
  const stream = await callError(client.serverStream({ count: 2, statusCode: grpc.status.RESOURCE_EXHAUSTED }, { onReply: (r) => replies.push(r.index) }));
  assert.equal(stream.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.deepEqual(replies, [0, 1]);
  assert.equal((await callError(client.clientStream([{}, { statusCode: grpc.status.ABORTED }]))).code, grpc.status.ABORTED);
  assert.equal((await callError(client.bidi([{}, { statusCode: grpc.status.OUT_OF_RANGE }]))).code, grpc.status.OUT_OF_RANGE);
}

/** The app cancels a server stream mid-way (RST_STREAM) and the server stops. */
export async function serverStreamCancellationReachesServer(client: EchoClient, server: TestGrpcServer): Promise<void> {
  const controller = new AbortController();
  const replies: number[] = [];
  const err = await callError(
    client.serverStream({ count: 1000, delayMs: 20 }, { signal: controller.signal, onReply: (r) => replies.push(r.index) === 2 && controller.abort() }),
  );
  assert.equal(err.code, grpc.status.CANCELLED);
  assert.equal(await server.calls.at(-1)!.outcome, 'cancelled');
  assert.ok(replies.length >= 2 && replies.length < 1000, `${replies.length} replies`);
}

/** A unary call cancelled while the server works on it: the server sees it cancelled. */
export async function unaryCancellationReachesServer(client: EchoClient, server: TestGrpcServer): Promise<void> {
  const controller = new AbortController();
  const count = server.calls.length;
  const call = client.unary({ delayMs: 5_000 }, { signal: controller.signal });
  await eventually(() => server.calls.length > count, { what: 'the call to reach the server' });
  controller.abort();
  assert.equal((await callError(call)).code, grpc.status.CANCELLED);
  assert.equal(await server.calls.at(-1)!.outcome, 'cancelled');
}

/** 4 MiB messages under flow control: unary both ways, a server stream of three, a client stream of two, bidi. */
export async function bigMessagesCross(client: EchoClient): Promise<void> {
  const big = payloadOf(4 * MiB);
  const unary = await client.unary({ payload: big, responseSize: 4 * MiB });
  assert.equal(unary.value.receivedBytes, 4 * MiB);
  assert.ok(isPayload(unary.value.payload, 4 * MiB), 'unary reply intact');
  const stream = await client.serverStream({ count: 3, responseSize: 4 * MiB });
  assert.equal(stream.value.length, 3);
  assert.ok(stream.value.every((r) => isPayload(r.payload, 4 * MiB)), 'every streamed reply intact');
  const upload = await client.clientStream([{ payload: big }, { payload: big }]);
  assert.equal(upload.value.receivedBytes, 8 * MiB);
  const bidi = await client.bidi([{ payload: big, responseSize: 4 * MiB }, { responseSize: 4 * MiB }]);
  assert.deepEqual(bidi.value.map((r) => r.receivedBytes), [4 * MiB, 0]);
  assert.ok(bidi.value.every((r) => isPayload(r.payload, 4 * MiB)));
}

/** Bidirectional ping-pong: each request is sent only after the previous reply arrived. */
export async function bidiPingPongCrosses(client: EchoClient): Promise<void> {
  const reqs = ['one', 'two', 'three', 'four'].map((message) => ({ message, responseSize: 3 }));
  const { value, headers, trailers } = await client.bidi(reqs);
  assert.deepEqual(value.map((r) => [r.index, r.message]), [[0, 'one'], [1, 'two'], [2, 'three'], [3, 'four']]);
  assert.deepEqual(headers.get('x-echo-method'), ['Bidi']);
  assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
}

/**
 * grpc-timeout ends a call the server holds for `delayMs` with DEADLINE_EXCEEDED within
 * `withinMs`, and the server sees it cancelled (not answered after its delay).
 */
export async function deadlineCancelsSlowCall(client: EchoClient, server: TestGrpcServer, { delayMs, withinMs }: { delayMs: number; withinMs: number }): Promise<void> {
  const started = Date.now();
  const err = await callError(client.unary({ delayMs }, { deadlineMs: 300 }));
  assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
  assert.ok(Date.now() - started < withinMs, 'ended at the deadline, not after the delay');
  assert.equal(await server.calls.at(-1)!.outcome, 'cancelled');
}

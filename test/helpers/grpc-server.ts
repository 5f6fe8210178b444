/**
 * The seed's gRPC server, in grpc-js: every call of the Echo service (echo.proto) is let
 * in only with `authorization: Bearer iamthewalrus` and answered UNAUTHENTICATED
 * otherwise, as the seed's Cloud Run server does. Served over h2c or TLS on 127.0.0.1
 * port 0. Each call is recorded (metadata, `:authority`, how it ended) so a test can
 * check what reached the server, e.g. that a client's cancellation travelled through
 * a proxy as RST_STREAM.
 *
 * Every reply sends initial metadata `x-echo-method` and trailers `x-echo-trailer`
 * plus a binary `x-echo-trailer-bin`, so header and trailer relay can be asserted.
 */
import type { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import {
  MESSAGE_SIZE_OPTIONS,
  SEED_AUTHORIZATION,
  echoServiceClient,
  payloadOf,
  type EchoMethod,
  type EchoReply,
  type ReceivedEchoRequest,
} from './grpc-proto.js';

export interface GrpcServerTls {
  readonly cert: string;
  readonly key: string;
  /** Trust anchors for client certificates; with `requireClientCert`, a client must present one. */
  readonly ca?: string;
  readonly requireClientCert?: boolean;
}

export interface GrpcServerOptions {
  /** The authorization metadata a call must carry; default `Bearer iamthewalrus`; null admits every call. */
  readonly authorization?: string | null;
  /** Serve TLS (ALPN h2) with this certificate; h2c (prior knowledge) when absent. */
  readonly tls?: GrpcServerTls;
}

export type CallOutcome = 'ok' | 'error' | 'cancelled';

export interface RecordedGrpcCall {
  readonly method: EchoMethod;
  /** Text request metadata as the server saw it. */
  readonly metadata: Record<string, string>;
  /** The request's `:authority` (or Host). */
  readonly authority: string;
  /** Settles once the call ends: answered, failed with a status, or cancelled by the client. */
  readonly outcome: Promise<CallOutcome>;
}

export interface TestGrpcServer {
  /** `127.0.0.1:PORT`, the target a gRPC client dials. */
  readonly address: string;
  readonly port: number;
  readonly tls: boolean;
  /** Every call that reached a handler, in arrival order (refused ones included). */
  readonly calls: readonly RecordedGrpcCall[];
  /** Stops at once, cancelling calls still open, so a hung stream never keeps a test alive. */
  close(): Promise<void>;
}

/** What every server call type shares (grpc-js exports no name for it). */
type AnyCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'cancelled' | 'metadata' | 'getHost' | 'sendMetadata'> & Pick<EventEmitter, 'on' | 'once' | 'off'>;

export async function startGrpcServer(options: GrpcServerOptions = {}): Promise<TestGrpcServer> {
  const authorization = options.authorization === undefined ? SEED_AUTHORIZATION : options.authorization;
  const calls: RecordedGrpcCall[] = [];

  /** Records the call and checks its authorization; returns the recorder, or undefined when refused. */
  function admit(method: EchoMethod, call: AnyCall): { settle(outcome: CallOutcome): void; reject: grpc.ServerErrorResponse | undefined } {
    let settle!: (outcome: CallOutcome) => void;
    const outcome = new Promise<CallOutcome>((resolve) => (settle = resolve));
    call.on('cancelled', () => settle('cancelled'));
    const metadata = textMetadata(call.metadata);
    calls.push({ method, metadata, authority: call.getHost(), outcome });
    const initial = new grpc.Metadata();
    initial.set('x-echo-method', method);
    let reject: grpc.ServerErrorResponse | undefined;
    if (authorization !== null && metadata['authorization'] !== authorization) {
      // The seed server's answer to any other token (or none).
      reject = statusError(grpc.status.UNAUTHENTICATED, 'authorization must be the token the STS issues for this server');
    } else {
      call.sendMetadata(initial);
    }
    return { settle, reject };
  }

  const handlers: grpc.UntypedServiceImplementation = {
    Unary(call: grpc.ServerUnaryCall<ReceivedEchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) {
      const { settle, reject } = admit('Unary', call);
      if (reject) return finishUnary(callback, settle, reject);
      const req = call.request;
      void waitUnlessCancelled(call, req.delayMs).then((go) => {
        if (!go) return;
        if (req.statusCode !== 0) return finishUnary(callback, settle, requestedStatus(req));
        finishUnary(callback, settle, null, reply(req, textMetadata(call.metadata), req.payload.length, 0));
      });
    },

    ServerStream(call: grpc.ServerWritableStream<ReceivedEchoRequest, EchoReply>) {
      const { settle, reject } = admit('ServerStream', call);
      if (reject) return failStream(call, settle, reject);
      const req = call.request;
      const metadata = textMetadata(call.metadata);
      void (async () => {
        for (let i = 0; i < Math.max(1, req.count); i++) {
          if (!(await waitUnlessCancelled(call, req.delayMs))) return;
          // Flow control: wait for the stream to drain before the next 4 MiB reply.
          if (!call.write(reply(req, metadata, req.payload.length, i))) await drained(call);
        }
        if (req.statusCode !== 0) return failStream(call, settle, requestedStatus(req));
        endStream(call, settle);
      })();
    },

    ClientStream(call: grpc.ServerReadableStream<ReceivedEchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) {
      const { settle, reject } = admit('ClientStream', call);
      if (reject) {
        call.resume();
        return finishUnary(callback, settle, reject);
      }
      let received = 0;
      let count = 0;
      let last: ReceivedEchoRequest | undefined;
      const messages: string[] = [];
      call.on('data', (req: ReceivedEchoRequest) => {
        received += req.payload.length;
        count += 1;
        messages.push(req.message);
        last = req;
      });
      call.on('end', () => {
        const req = last ?? emptyRequest();
        void waitUnlessCancelled(call, req.delayMs).then((go) => {
          if (!go) return;
          if (req.statusCode !== 0) return finishUnary(callback, settle, requestedStatus(req));
          finishUnary(callback, settle, null, reply({ ...req, message: messages.join(',') }, textMetadata(call.metadata), received, count));
        });
      });
    },

    Bidi(call: grpc.ServerDuplexStream<ReceivedEchoRequest, EchoReply>) {
      const { settle, reject } = admit('Bidi', call);
      if (reject) {
        call.resume();
        return failStream(call, settle, reject);
      }
      const metadata = textMetadata(call.metadata);
      let index = 0;
      let failed = false;
      // Replies go out in request order, each after its own delay.
      let chain = Promise.resolve();
      call.on('data', (req: ReceivedEchoRequest) => {
        const i = index++;
        chain = chain.then(async () => {
          if (failed || !(await waitUnlessCancelled(call, req.delayMs))) return;
          if (req.statusCode !== 0) {
            failed = true;
            return failStream(call, settle, requestedStatus(req));
          }
          if (!call.write(reply(req, metadata, req.payload.length, i))) await drained(call);
        });
      });
      call.on('end', () => {
        void chain.then(() => {
          if (!failed && !call.cancelled) endStream(call, settle);
        });
      });
    },
  };

  const server = new grpc.Server(MESSAGE_SIZE_OPTIONS);
  server.addService(echoServiceClient().service, handlers);
  const credentials = options.tls
    ? grpc.ServerCredentials.createSsl(
        options.tls.ca === undefined ? null : Buffer.from(options.tls.ca),
        [{ private_key: Buffer.from(options.tls.key), cert_chain: Buffer.from(options.tls.cert) }],
        options.tls.requireClientCert ?? false,
      )
    : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    port,
    tls: options.tls !== undefined,
    calls,
    close() {
      server.forceShutdown();
      return Promise.resolve();
    },
  };
}

function reply(req: ReceivedEchoRequest, metadata: Record<string, string>, receivedBytes: number, index: number): EchoReply {
  return { message: req.message, payload: payloadOf(req.responseSize), metadata, receivedBytes, index };
}

function emptyRequest(): ReceivedEchoRequest {
  return { message: '', responseSize: 0, payload: Buffer.alloc(0), count: 0, delayMs: 0, statusCode: 0 };
}

function trailers(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-echo-trailer', 'done');
  md.set('x-echo-trailer-bin', Buffer.from([0, 1, 2, 0xff]));
  return md;
}

function statusError(code: grpc.status, details: string): grpc.ServerErrorResponse {
  return Object.assign(new Error(details), { code, details, metadata: trailers() });
}

function requestedStatus(req: ReceivedEchoRequest): grpc.ServerErrorResponse {
  return statusError(req.statusCode, `status ${req.statusCode} as requested`);
}

function finishUnary(
  callback: grpc.sendUnaryData<EchoReply>,
  settle: (outcome: CallOutcome) => void,
  err: grpc.ServerErrorResponse | null,
  value?: EchoReply,
): void {
  if (err) {
    callback(err);
    settle('error');
  } else {
    callback(null, value, trailers());
    settle('ok');
  }
}

function failStream(call: grpc.ServerWritableStream<ReceivedEchoRequest, EchoReply> | grpc.ServerDuplexStream<ReceivedEchoRequest, EchoReply>, settle: (outcome: CallOutcome) => void, err: grpc.ServerErrorResponse): void {
  // grpc-js ends a server-side stream with a status through an 'error' event.
  call.emit('error', err);
  settle('error');
}

function endStream(call: grpc.ServerWritableStream<ReceivedEchoRequest, EchoReply> | grpc.ServerDuplexStream<ReceivedEchoRequest, EchoReply>, settle: (outcome: CallOutcome) => void): void {
  call.end(trailers());
  settle('ok');
}

/** Waits `ms` (0: not at all); false when the client cancelled meanwhile (deadline or RST_STREAM). */
function waitUnlessCancelled(call: AnyCall, ms: number): Promise<boolean> {
  if (call.cancelled) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      call.off('cancelled', onCancel);
      resolve(!call.cancelled);
    }, ms);
    const onCancel = () => {
      clearTimeout(timer);
      resolve(false);
    };
    call.once('cancelled', onCancel);
  });
}

function drained(call: AnyCall): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      call.off('cancelled', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
  });
}

function textMetadata(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(md.getMap())) if (typeof value === 'string') out[key] = value;
  return out;
}

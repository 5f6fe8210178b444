/**
 * The gRPC test service (test/fixtures/grpc/echo.proto) as grpc-js sees it: the service
 * definition both the harness server and client use, the message shapes, and the
 * payload pattern that lets a test check a large message arrived intact.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** The .proto in the source tree (tests run from dist/test/, fixtures are not copied). */
export const ECHO_PROTO = fileURLToPath(new URL('../../../test/fixtures/grpc/echo.proto', import.meta.url));
/** Full service name, as it appears in the `:path` of every call: `/stssidecar.test.Echo/Unary`. */
export const ECHO_SERVICE = 'stssidecar.test.Echo';

/** The seed's gRPC server lets a call in only with this authorization metadata. */
export const SEED_AUTHORIZATION = 'Bearer iamthewalrus';

/**
 * grpc-js (client and server) refuses messages over 4 MiB by default; the harness raises
 * both limits so a 4 MiB payload plus its framing passes and the sidecar is what is tested.
 */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
export const MESSAGE_SIZE_OPTIONS = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
} as const;

/** EchoRequest with proto-loader's camelCase names; every field optional on the way in. */
export interface EchoRequest {
  message?: string;
  responseSize?: number;
  payload?: Buffer;
  count?: number;
  delayMs?: number;
  statusCode?: number;
}

/** EchoRequest as a handler receives it (`defaults: true`: absent fields are zero values). */
export type ReceivedEchoRequest = Required<EchoRequest>;

export interface EchoReply {
  message: string;
  payload: Buffer;
  metadata: Record<string, string>;
  receivedBytes: number;
  index: number;
}

/** Method names as in the .proto; the path of a call is `/${ECHO_SERVICE}/${method}`. */
export type EchoMethod = 'Unary' | 'ServerStream' | 'ClientStream' | 'Bidi';

let cached: grpc.ServiceClientConstructor | undefined;

/** The generated client constructor; its `.service` is the definition `addService` takes. */
export function echoServiceClient(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  // longs as Number: received_bytes stays far below 2^53; defaults: absent fields read as zero.
  const definition = loadSync(ECHO_PROTO, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  const loaded = grpc.loadPackageDefinition(definition);
  const pkg = (loaded['stssidecar'] as grpc.GrpcObject)['test'] as grpc.GrpcObject;
  cached = pkg['Echo'] as grpc.ServiceClientConstructor;
  return cached;
}

/** `size` bytes of a fixed pattern (i mod 251), so a truncated or reordered message is caught. */
export function payloadOf(size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = i % 251;
  return buf;
}

/** True when `buf` is exactly `payloadOf(buf.length)`. */
export function isPayload(buf: Buffer, size: number): boolean {
  return buf.length === size && buf.equals(payloadOf(size));
}

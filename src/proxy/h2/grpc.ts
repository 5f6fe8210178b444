/**
 * gRPC as the sidecar's own answers and metrics see it (issue 12). A gRPC client reads the
 * outcome of a call from `grpc-status` and `grpc-message`, not from the HTTP status: an answer
 * the sidecar gives itself (no route, no token, upstream down) must be a gRPC status, or the
 * client reports a bare "UNAVAILABLE: Received HTTP status code 503" and the code is lost.
 * See the gRPC over HTTP/2 protocol spec (doc/PROTOCOL-HTTP2.md) and doc/statuscodes.md.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { ErrorCode, SidecarError } from '../../errors.js';

/** The gRPC status codes (doc/statuscodes.md), by number: label values come from this closed set. */
export const GRPC_STATUS_NAMES = [
  'ok',
  'cancelled',
  'unknown',
  'invalid_argument',
  'deadline_exceeded',
  'not_found',
  'already_exists',
  'permission_denied',
  'resource_exhausted',
  'failed_precondition',
  'aborted',
  'out_of_range',
  'unimplemented',
  'internal',
  'unavailable',
  'data_loss',
  'unauthenticated',
] as const;

/** The `grpc_status` label: a code's name, `none` for a request that is not gRPC, `invalid` for a value outside the spec. */
export type GrpcStatusLabel = (typeof GRPC_STATUS_NAMES)[number] | 'none' | 'invalid';

export const GrpcStatus = {
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/**
 * Content-Type "application/grpc" [("+proto" / "+json" / {custom})] (PROTOCOL-HTTP2.md,
 * Requests). gRPC-Web (`application/grpc-web...`) frames its trailers differently and is not matched.
 */
export function isGrpc(headers: IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  if (type === undefined) return false;
  const lower = type.toLowerCase();
  if (!lower.startsWith('application/grpc')) return false;
  const next = lower.charAt('application/grpc'.length);
  return next === '' || next === '+' || next === ';';
}

/** What a sidecar error means to a gRPC client: fail closed, and retryable only when it is. */
const BY_CODE: Partial<Record<ErrorCode, number>> = {
  ERR_ROUTE_NOT_FOUND: GrpcStatus.NOT_FOUND,
  ERR_FORWARD_DENIED: GrpcStatus.PERMISSION_DENIED,
  ERR_FORWARD_BAD_TARGET: GrpcStatus.INVALID_ARGUMENT,
  ERR_FORWARD_LOOP: GrpcStatus.INTERNAL,
  ERR_PROXY_PATH_REJECTED: GrpcStatus.INVALID_ARGUMENT,
  ERR_PROXY_METHOD_NOT_ALLOWED: GrpcStatus.INVALID_ARGUMENT,
  // The call would reach the upstream without its credential; grpc-go's own STS credentials
  // fail a call the same way when the exchange fails.
  ERR_TOKEN_UNAVAILABLE: GrpcStatus.UNAUTHENTICATED,
  ERR_UPSTREAM_TIMEOUT: GrpcStatus.DEADLINE_EXCEEDED,
  ERR_UPSTREAM_UNREACHABLE: GrpcStatus.UNAVAILABLE,
  ERR_UPSTREAM_TLS: GrpcStatus.UNAVAILABLE,
  ERR_UPSTREAM_FAILED: GrpcStatus.UNAVAILABLE,
};

export function grpcStatusOf(err: SidecarError): number {
  return BY_CODE[err.code] ?? (err.status === 503 ? GrpcStatus.UNAVAILABLE : GrpcStatus.INTERNAL);
}

/**
 * `grpc-message` is percent-encoded UTF-8 (PROTOCOL-HTTP2.md, Responses): bytes outside
 * 0x20-0x7E, and "%" itself, become %XX.
 */
export function percentEncodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The label for a `grpc-status` value as sent (a string of digits), bounded to the spec's codes. */
export function grpcStatusLabel(value: string | number | undefined): GrpcStatusLabel {
  if (value === undefined) return 'unknown';
  const n = typeof value === 'number' ? value : /^\d{1,2}$/.test(value) ? Number(value) : -1;
  return GRPC_STATUS_NAMES[n] ?? 'invalid';
}

/**
 * A gRPC response that carries no grpc-status maps from its HTTP status
 * (doc/http-grpc-status-mapping.md): what a gRPC client reports for it.
 */
export function grpcStatusFromHttp(status: number): GrpcStatusLabel {
  switch (status) {
    case 400:
      return 'internal';
    case 401:
      return 'unauthenticated';
    case 403:
      return 'permission_denied';
    case 404:
      return 'unimplemented';
    case 429:
    case 502:
    case 503:
    case 504:
      return 'unavailable';
    default:
      return 'unknown';
  }
}

/** The status of a gRPC call the sidecar answered itself, by request, for the outcome's metrics. */
const answered = new WeakMap<object, number>();

export function noteAnsweredGrpcStatus(req: object, status: number): void {
  answered.set(req, status);
}

export function answeredGrpcStatus(req: object): number | undefined {
  return answered.get(req);
}

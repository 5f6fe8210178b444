/**
 * The sidecar's own answers to an app: a JSON body with a stable code, never a token.
 * `{ error, code, route }` plus, where known, the code of the underlying cause. A gRPC request
 * gets a gRPC status instead (issue 12), the same code in `x-sts-sidecar-error`.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { SidecarError, TokenUnavailableError, UpstreamError } from '../errors.js';
import { scrub } from '../log/redact.js';
import { grpcStatusOf, isGrpc, noteAnsweredGrpcStatus, percentEncodeGrpcMessage } from './h2/grpc.js';
import type { InboundRequest, InboundResponse } from './inbound.js';

export function errorBody(err: SidecarError, route: string | undefined): string {
  const body: Record<string, unknown> = { error: scrub(err.message), code: err.code, route: route ?? null };
  // Only a missing token has a cause worth naming (the cache's failure); every other answer is its own root.
  if (err instanceof TokenUnavailableError) {
    if (err.rootCode !== err.code) body['cause'] = err.rootCode;
    if (err.stsError !== undefined) body['stsError'] = err.stsError;
  }
  return JSON.stringify(body);
}

export function sendError(res: InboundResponse, err: SidecarError, route: string | undefined): void {
  if (res.headersSent) {
    // Too late for a status: cut the response so the app sees a failure, not a truncated success.
    res.destroy(err);
    return;
  }
  // Both node:http's ServerResponse and node:http2's compat response keep their request.
  const req = (res as { req?: InboundRequest }).req;
  if (req && isGrpc(req.headers)) return sendGrpcError(req, res, err);
  const body = errorBody(err, route);
  res.writeHead(err.status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    'x-sts-sidecar-error': err.code,
  });
  res.end(body);
}

/**
 * A failed call as gRPC reports one (PROTOCOL-HTTP2.md, Responses): HTTP 200, the status in
 * `grpc-status` and `grpc-message`. Over HTTP/2 a Trailers-Only response, one HEADERS frame
 * with END_STREAM, which is how a gRPC server answers a call it fails before any message.
 */
function sendGrpcError(req: InboundRequest, res: InboundResponse, err: SidecarError): void {
  const status = grpcStatusOf(err);
  noteAnsweredGrpcStatus(req, status);
  const headers = {
    'content-type': 'application/grpc',
    'grpc-status': String(status),
    'grpc-message': percentEncodeGrpcMessage(scrub(err.message)),
    'x-sts-sidecar-error': err.code,
  };
  const stream = (res as { stream?: { respond(headers: Record<string, string | number>, options: { endStream: boolean }): void } }).stream;
  if (stream) return stream.respond({ ':status': 200, ...headers }, { endStream: true });
  res.writeHead(200, { ...headers, 'content-length': 0 });
  res.end();
}

/** The same answer written straight to a raw socket (upgrade requests have no ServerResponse). */
export function sendErrorOnSocket(socket: Duplex, err: SidecarError, route: string | undefined): void {
  const body = errorBody(err, route);
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\n` +
      `content-type: application/json\r\ncache-control: no-store\r\nx-sts-sidecar-error: ${err.code}\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** Maps an undici/socket failure onto 502/504 with a stable code (the original kept as cause). */
export function upstreamError(err: unknown, origin: string): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (TIMEOUT_CODES.has(code)) {
    return new UpstreamError('ERR_UPSTREAM_TIMEOUT', `upstream ${origin} timed out (${code})`, { cause: err });
  }
  if (/^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO|DEPTH_ZERO|SELF_SIGNED|ERR_OSSL)/.test(code) || /certificate|handshake/i.test((err as Error).message ?? '')) {
    return new UpstreamError('ERR_UPSTREAM_TLS', `TLS with upstream ${origin} failed (${code || 'handshake'})`, { cause: err });
  }
  return new UpstreamError('ERR_UPSTREAM_UNREACHABLE', `upstream ${origin} failed (${code || (err as Error).name})`, { cause: err });
}

/**
 * The one place that records how a proxied request or upgrade ended: the observer's count and
 * duration (by route, status or `aborted`), the debug line, and the throttled warning for a
 * failure the sidecar answered itself.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { SidecarError } from '../errors.js';
import type { ProxyContext, ProxyOutcome, RequestDetail } from './context.js';
import { answeredGrpcStatus, grpcStatusFromHttp, grpcStatusLabel, isGrpc, type GrpcStatusLabel } from './h2/grpc.js';
import type { InboundRequest } from './inbound.js';

/** Counts and logs one request that reached `route` (or "unmatched"); `started` from performance.now(). */
export function recordOutcome(ctx: ProxyContext, route: string, req: InboundRequest, outcome: ProxyOutcome, started: number, upgrade: boolean): void {
  const seconds = (performance.now() - started) / 1000;
  ctx.observer.finished(route, outcome, seconds, requestDetail(req, outcome));
  if (ctx.logger.isLevelEnabled('debug')) {
    ctx.logger.debug(
      {
        route,
        method: req.method,
        path: (req.url ?? '').split('?', 1)[0],
        ...(upgrade ? { upgrade: req.headers.upgrade } : {}),
        status: outcome,
        ms: +(seconds * 1000).toFixed(3),
      },
      'proxied',
    );
  }
}

/** A request no route takes (404) or whose target is refused (400), answered already: counted as "unmatched". */
export function recordUnrouted(ctx: ProxyContext, req: InboundRequest, err: SidecarError, started: number): void {
  // A gRPC call was answered 200 with its status in grpc-status (respond.ts).
  const status = answeredGrpcStatus(req) === undefined ? err.status : 200;
  ctx.observer.finished('unmatched', status, (performance.now() - started) / 1000, requestDetail(req, status));
  if (ctx.logger.isLevelEnabled('debug')) {
    const what = err.code === 'ERR_ROUTE_NOT_FOUND' ? 'request matched no route' : 'request refused before routing';
    ctx.logger.debug({ method: req.method, host: req.headers.host, code: err.code }, what);
  }
}

/** A per-request failure, logged at most once per route and code per throttle window. */
export function warnThrottled(ctx: ProxyContext, route: string, err: SidecarError, what: string): void {
  const suppressed = ctx.failureLogs.admit(`${route} ${err.code}`);
  if (suppressed !== undefined) ctx.logger.warn({ route, code: err.code, err, suppressed }, what);
}

/** The HTTP/2 stream under a node:http2 compat request: what was sent on it, trailers included. */
interface SentOnStream {
  readonly stream?: { readonly sentHeaders?: IncomingHttpHeaders; readonly sentTrailers?: IncomingHttpHeaders };
}

/** The protocol and, for a gRPC call, the status the app got (issue 12). */
export function requestDetail(req: InboundRequest, outcome: ProxyOutcome): RequestDetail {
  const protocol = req.httpVersion === '2.0' ? 'h2' : 'h1';
  return { protocol, grpcStatus: isGrpc(req.headers) ? grpcOutcome(req, outcome) : 'none' };
}

/**
 * The status a gRPC client saw: the sidecar's own answer, else the `grpc-status` sent to the
 * app (in the trailers, or the headers of a Trailers-Only response), else what its HTTP status
 * maps to. A call whose response never completed was cancelled, as far as the app knows.
 */
function grpcOutcome(req: InboundRequest, outcome: ProxyOutcome): GrpcStatusLabel {
  const answered = answeredGrpcStatus(req);
  if (answered !== undefined) return grpcStatusLabel(answered);
  if (outcome === 'aborted') return 'cancelled';
  const stream = (req as InboundRequest & SentOnStream).stream;
  const sent = stream?.sentTrailers?.['grpc-status'] ?? stream?.sentHeaders?.['grpc-status'];
  if (sent !== undefined) return grpcStatusLabel(String(sent));
  return outcome === 200 ? 'unknown' : grpcStatusFromHttp(outcome);
}

/**
 * The one place that records how a proxied request or upgrade ended: the observer's count and
 * duration (by route, status or `aborted`), the debug line, and the throttled warning for a
 * failure the sidecar answered itself.
 */
import type { SidecarError } from '../errors.js';
import type { ProxyContext, ProxyOutcome } from './context.js';
import type { InboundRequest } from './inbound.js';

/** Counts and logs one request that reached `route` (or "unmatched"); `started` from performance.now(). */
export function recordOutcome(ctx: ProxyContext, route: string, req: InboundRequest, outcome: ProxyOutcome, started: number, upgrade: boolean): void {
  const seconds = (performance.now() - started) / 1000;
  ctx.observer.finished(route, outcome, seconds);
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
  ctx.observer.finished('unmatched', err.status, (performance.now() - started) / 1000);
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

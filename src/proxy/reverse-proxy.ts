/**
 * The reverse proxy: find the route, get a token, forward with undici's Pool.dispatch()
 * and stream both bodies. It sees only the TokenProvider interface, never the STS.
 *
 * Fail closed: when no token can be had the app gets a 503 JSON error and nothing is
 * forwarded; a request that matches no route gets a 404 and nothing is forwarded.
 * Every entry (this listener, a route's own, the forward proxy, upgrades) matches and forwards
 * the same normalised target (request-path.ts), so a route's token stays on its paths.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { MethodNotAllowedError, RouteNotFoundError, SidecarError, TokenUnavailableError } from '../errors.js';
import type { CachedToken, TokenProvider } from '../cache/token-provider.js';
import type { Logger } from '../log/logger.js';
import type { LogThrottle } from '../log/throttle.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './headers.js';
import { normalizeRequestTarget } from './request-path.js';
import { relayInformational, sendError, upstreamError } from './respond.js';
import { pathMatches, RouteTable, type RoutableRoute } from './routing.js';
import { retryableAfter401, Upstream401Handler, type Upstream401Policy } from './upstream-401.js';
import type { Upstream } from './upstream.js';

export interface ProxyRoute extends RoutableRoute {
  readonly upstream: Upstream;
  /** Lower-case header name carrying the token. */
  readonly tokenHeader: string;
  /** e.g. "Bearer"; empty sends the bare token. */
  readonly tokenScheme: string;
  readonly replaceExisting: boolean;
  /** Send the route's configured `host` upstream instead of the upstream's own authority. */
  readonly preserveHost: boolean;
}

/**
 * How a request ended, for metrics and logs: the status the app got, or `aborted` when its
 * response never completed (the app hung up, or the connection was cut at the end of the
 * drain): counting those by the status in the head would call them successes (issue 10 item 18).
 */
export type ProxyOutcome = number | 'aborted';

export interface ProxyObserver {
  /** Called once per request or upgrade that reached a route or was refused (`route` is "unmatched" then). */
  finished(route: string, outcome: ProxyOutcome, seconds: number): void;
  retriedAfter401?(route: string): void;
}

export interface ProxyContext {
  readonly tokens: TokenProvider;
  readonly logger: Logger;
  readonly observer: ProxyObserver;
  /** Keeps per-request failure logs to one line per route and code every few seconds. */
  readonly failureLogs: LogThrottle;
}

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The route for an inbound request, or undefined when none serves it. Rewrites `req.url` to
 * the normalised target first, so the route is matched on exactly what is forwarded (issue 10
 * item 7). Throws PathRejectedError for a target readers could disagree on.
 */
export type RouteResolver = (req: IncomingMessage) => ProxyRoute | undefined;

/** Normalises `req.url` in place (see request-path.ts) and returns it. */
export function normalizeRequestUrl(req: IncomingMessage): string {
  const url = normalizeRequestTarget(req.url ?? '/');
  req.url = url;
  return url;
}

/** The shared proxy listener: Host and path select the route. */
export function sharedRouteResolver(routes: readonly ProxyRoute[]): RouteResolver {
  const table = new RouteTable(routes);
  return (req) => (req.url?.startsWith('/') ? table.match(req.headers.host, normalizeRequestUrl(req)) : undefined);
}

/** A route's dedicated listener: every request belongs to that route, if under its pathPrefix. */
export function dedicatedRouteResolver(route: ProxyRoute): RouteResolver {
  return (req) => (req.url?.startsWith('/') && pathMatches(route.pathPrefix, normalizeRequestUrl(req)) ? route : undefined);
}

/** Handler for the shared proxy listener: routes by Host and path. */
export function createSharedListenerHandler(routes: readonly ProxyRoute[], ctx: ProxyContext): RequestListener {
  return createRoutingHandler(sharedRouteResolver(routes), ctx, (req) => `no route for host "${req.headers.host ?? ''}" and this path`);
}

/** Handler for a route's dedicated listener: every request belongs to that route. */
export function createDedicatedListenerHandler(route: ProxyRoute, ctx: ProxyContext): RequestListener {
  return createRoutingHandler(dedicatedRouteResolver(route), ctx, () => `route "${route.name}" serves only paths under "${route.pathPrefix}"`);
}

function createRoutingHandler(resolve: RouteResolver, ctx: ProxyContext, miss: (req: IncomingMessage) => string): RequestListener {
  return (req, res) => {
    let route: ProxyRoute | undefined;
    try {
      route = resolve(req);
    } catch (err) {
      if (!(err instanceof SidecarError)) throw err;
      return refuseUnrouted(req, res, ctx, err);
    }
    if (!route) return refuseUnrouted(req, res, ctx, new RouteNotFoundError(miss(req)));
    proxyRequest(route, req, res, ctx);
  };
}

/** A request no route takes (404) or whose target is refused (400): nothing is forwarded. */
function refuseUnrouted(req: IncomingMessage, res: ServerResponse, ctx: ProxyContext, err: SidecarError): void {
  const started = performance.now();
  sendError(res, err, undefined);
  ctx.observer.finished('unmatched', err.status, (performance.now() - started) / 1000);
  if (ctx.logger.isLevelEnabled('debug')) {
    const what = err.code === 'ERR_ROUTE_NOT_FOUND' ? 'request matched no route' : 'request refused before routing';
    ctx.logger.debug({ method: req.method, host: req.headers.host, code: err.code }, what);
  }
}

/** The Host sent upstream: the route's configured host under preserveHost, never the app's (issue 10 item 8). */
export function upstreamHostHeader(route: ProxyRoute): string {
  return route.preserveHost && route.host ? route.host : route.upstream.host;
}

/**
 * RFC 9110 9.3.8: TRACE echoes the request it received, injected token included, back to
 * whoever sent it, and through any intermediary that logs it (issue 10 item 14).
 */
export function refusedMethod(method: string | undefined): MethodNotAllowedError | undefined {
  return method === 'TRACE' ? new MethodNotAllowedError('TRACE is not forwarded on a route: it would echo the injected token (RFC 9110 9.3.8)') : undefined;
}

export function proxyRequest(route: ProxyRoute, req: IncomingMessage, res: ServerResponse, ctx: ProxyContext): void {
  const exchange = new ProxiedRequest(route, req, res, ctx);
  const refused = refusedMethod(req.method);
  if (refused) return exchange.refuse(refused);
  // The app keeps its own credential when the route says so (authorization.replaceExisting: false).
  if (!route.replaceExisting && req.headers[route.tokenHeader] !== undefined) exchange.forward(undefined);
  else exchange.withToken();
}

/** A per-request failure, logged at most once per route and code per throttle window. */
export function warnThrottled(ctx: ProxyContext, route: string, err: SidecarError, what: string): void {
  const suppressed = ctx.failureLogs.admit(`${route} ${err.code}`);
  if (suppressed !== undefined) ctx.logger.warn({ route, code: err.code, err, suppressed }, what);
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * `Bearer <token>`, built once per issued token rather than once per request. Keyed by the
 * token object alone: each cache entry (and so each token object) belongs to one route.
 */
const credentials = new WeakMap<CachedToken, string>();
export function credentialFor(route: ProxyRoute, token: CachedToken): string {
  let value = credentials.get(token);
  if (value === undefined) {
    value = route.tokenScheme ? `${route.tokenScheme} ${token.accessToken}` : token.accessToken;
    credentials.set(token, value);
  }
  return value;
}

/**
 * One app request on its way upstream, and the undici dispatch handler that streams the
 * answer back with backpressure. One object per request keeps the hot path to a single
 * allocation and one 'close' listener (plus the 401 decorator when a token is injected).
 */
class ProxiedRequest implements Dispatcher.DispatchHandler, Upstream401Policy {
  readonly #route: ProxyRoute;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #ctx: ProxyContext;
  readonly #started = performance.now();
  #controller: Dispatcher.DispatchController | undefined;
  #token: CachedToken | undefined;
  #attempt = 0;

  constructor(route: ProxyRoute, req: IncomingMessage, res: ServerResponse, ctx: ProxyContext) {
    this.#route = route;
    this.#req = req;
    this.#res = res;
    this.#ctx = ctx;
    res.once('close', () => this.#onClose());
  }

  #onClose(): void {
    const res = this.#res;
    const completed = res.writableFinished;
    // The app hung up: stop the upstream exchange too (but never a shared STS exchange).
    if (!completed && this.#controller && !this.#controller.aborted) {
      this.#controller.abort(new Error('client closed the connection'));
    }
    const outcome: ProxyOutcome = completed ? res.statusCode : 'aborted';
    const seconds = (performance.now() - this.#started) / 1000;
    this.#ctx.observer.finished(this.#route.name, outcome, seconds);
    if (this.#ctx.logger.isLevelEnabled('debug')) {
      const req = this.#req;
      this.#ctx.logger.debug(
        { route: this.#route.name, method: req.method, path: (req.url ?? '').split('?', 1)[0], status: outcome, ms: +(seconds * 1000).toFixed(3) },
        'proxied',
      );
    }
  }

  withToken(): void {
    this.#ctx.tokens.getToken(this.#route.name).then(
      (token) => this.forward(token),
      (err: unknown) => this.#fail(err instanceof SidecarError ? err : new TokenUnavailableError(this.#route.name, err), 'request refused'),
    );
  }

  refuse(err: SidecarError): void {
    this.#fail(err, 'request refused');
  }

  forward(token: CachedToken | undefined): void {
    const res = this.#res;
    if (res.destroyed) return; // the app went away while we waited for a token
    const route = this.#route;
    const req = this.#req;
    const upstream = route.upstream;
    const headers = forwardRequestHeaders(req.rawHeaders, req.headers.connection, {
      tokenHeader: route.tokenHeader,
      dropTokenHeader: token !== undefined,
    });
    headers.push('host', upstreamHostHeader(route));
    if (token) headers.push(route.tokenHeader, credentialFor(route, token));

    const method = req.method ?? 'GET';
    const withBody = hasBody(req.headers);
    this.#token = token;
    const handler = token ? new Upstream401Handler(this, this, retryableAfter401(method, withBody, this.#attempt)) : this;
    // A certificate-bound token travels on connections presenting its certificate (RFC 8705 3).
    upstream.poolFor(token?.identity).dispatch(
      {
        origin: upstream.origin,
        path: upstream.target(req.url ?? '/'),
        method: method as Dispatcher.HttpMethod,
        headers,
        body: withBody ? req : null,
        headersTimeout: upstream.timeoutMs,
        bodyTimeout: upstream.timeoutMs,
      },
      handler,
    );
  }

  invalidateToken(): boolean {
    return this.#ctx.tokens.invalidate(this.#route.name, this.#token!.accessToken);
  }

  retryWithFreshToken(): void {
    const route = this.#route;
    this.#ctx.observer.retriedAfter401?.(route.name);
    this.#ctx.logger.info({ route: route.name }, 'upstream answered 401 to the injected token; exchanging again and retrying once');
    this.#attempt += 1;
    this.withToken();
  }

  #fail(err: SidecarError, what: string): void {
    warnThrottled(this.#ctx, this.#route.name, err, what);
    sendError(this.#res, err, this.#route.name);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#res.destroyed) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200) return relayInformational(this.#res, statusCode, headers);
    this.#res.writeHead(statusCode, statusMessage, forwardResponseHeaders(headers));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#res.write(chunk)) {
      controller.pause();
      this.#res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.#res.end();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.#res.destroyed) return;
    this.#fail(upstreamError(err, this.#route.upstream.origin), 'upstream request failed');
  }
}

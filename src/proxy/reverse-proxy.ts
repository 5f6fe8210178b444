/**
 * The reverse proxy: find the route, get a token, forward with undici's Pool.dispatch()
 * and stream both bodies. It sees only the TokenProvider interface, never the STS.
 *
 * Fail closed: when no token can be had the app gets a 503 JSON error and nothing is
 * forwarded; a request that matches no route gets a 404 and nothing is forwarded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { RouteNotFoundError, SidecarError, TokenUnavailableError } from '../errors.js';
import type { CachedToken, TokenProvider } from '../cache/token-provider.js';
import type { IssuedToken } from '../sts/exchange-response.js';
import type { Logger } from '../log/logger.js';
import type { LogThrottle } from '../log/throttle.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './headers.js';
import { sendError, upstreamError } from './respond.js';
import { pathMatches, RouteTable, type RoutableRoute } from './routing.js';
import type { Upstream } from './upstream.js';

export interface ProxyRoute extends RoutableRoute {
  readonly upstream: Upstream;
  /** Lower-case header name carrying the token. */
  readonly tokenHeader: string;
  /** e.g. "Bearer"; empty sends the bare token. */
  readonly tokenScheme: string;
  readonly replaceExisting: boolean;
  readonly preserveHost: boolean;
}

export interface ProxyObserver {
  /** Called once per request that reached a route or was refused (`route` is "unmatched" then). */
  finished(route: string, statusCode: number, seconds: number): void;
  retriedAfter401?(route: string): void;
}

export interface ProxyContext {
  readonly tokens: TokenProvider;
  readonly logger: Logger;
  readonly observer: ProxyObserver;
  /** Keeps per-request failure logs to one line per route and code every few seconds. */
  readonly failureLogs: LogThrottle;
}

/** RFC 9110 section 9.2.2. A retry after 401 is only safe for these, and only without a body. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** Handler for the shared proxy listener: routes by Host and path. */
export function createSharedListenerHandler(routes: readonly ProxyRoute[], ctx: ProxyContext): RequestListener {
  const table = new RouteTable(routes);
  return (req, res) => {
    const url = req.url ?? '/';
    const route = url.startsWith('/') ? table.match(req.headers.host, url) : undefined;
    if (!route) return refuseUnmatched(req, res, ctx, `no route for host "${req.headers.host ?? ''}" and this path`);
    proxyRequest(route, req, res, ctx);
  };
}

/** Handler for a route's dedicated listener: every request belongs to that route. */
export function createDedicatedListenerHandler(route: ProxyRoute, ctx: ProxyContext): RequestListener {
  return (req, res) => {
    const url = req.url ?? '/';
    if (!url.startsWith('/') || !pathMatches(route.pathPrefix, url)) {
      return refuseUnmatched(req, res, ctx, `route "${route.name}" serves only paths under "${route.pathPrefix}"`);
    }
    proxyRequest(route, req, res, ctx);
  };
}

function refuseUnmatched(req: IncomingMessage, res: ServerResponse, ctx: ProxyContext, message: string): void {
  const started = performance.now();
  sendError(res, new RouteNotFoundError(message), undefined);
  ctx.observer.finished('unmatched', 404, (performance.now() - started) / 1000);
  if (ctx.logger.isLevelEnabled('debug')) ctx.logger.debug({ method: req.method, host: req.headers.host }, 'request matched no route');
}

export function proxyRequest(route: ProxyRoute, req: IncomingMessage, res: ServerResponse, ctx: ProxyContext): void {
  const exchange = new ProxiedRequest(route, req, res, ctx);
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
const credentials = new WeakMap<IssuedToken, string>();
export function credentialFor(route: ProxyRoute, token: IssuedToken): string {
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
 * allocation and one 'close' listener.
 */
class ProxiedRequest implements Dispatcher.DispatchHandler {
  readonly #route: ProxyRoute;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #ctx: ProxyContext;
  readonly #started = performance.now();
  #controller: Dispatcher.DispatchController | undefined;
  #token: CachedToken | undefined;
  #attempt = 0;
  #mayRetry401 = false;
  #discard = false;

  constructor(route: ProxyRoute, req: IncomingMessage, res: ServerResponse, ctx: ProxyContext) {
    this.#route = route;
    this.#req = req;
    this.#res = res;
    this.#ctx = ctx;
    res.once('close', () => this.#onClose());
  }

  #onClose(): void {
    const res = this.#res;
    // The app hung up: stop the upstream exchange too (but never a shared STS exchange).
    if (!res.writableFinished && this.#controller && !this.#controller.aborted) {
      this.#controller.abort(new Error('client closed the connection'));
    }
    const seconds = (performance.now() - this.#started) / 1000;
    this.#ctx.observer.finished(this.#route.name, res.statusCode, seconds);
    if (this.#ctx.logger.isLevelEnabled('debug')) {
      const req = this.#req;
      this.#ctx.logger.debug(
        { route: this.#route.name, method: req.method, path: (req.url ?? '').split('?', 1)[0], status: res.statusCode, ms: +(seconds * 1000).toFixed(3) },
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
    headers.push('host', route.preserveHost && req.headers.host ? req.headers.host : upstream.host);
    if (token) headers.push(route.tokenHeader, credentialFor(route, token));

    const method = req.method ?? 'GET';
    const withBody = hasBody(req.headers);
    this.#token = token;
    this.#mayRetry401 = token !== undefined && this.#attempt === 0 && !withBody && IDEMPOTENT.has(method);
    this.#discard = false;
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
      this,
    );
  }

  #retryWithFreshToken(): void {
    const route = this.#route;
    this.#ctx.tokens.invalidate(route.name, this.#token!.accessToken);
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
    if (statusCode === 401 && this.#mayRetry401) {
      // Read and drop this answer (keeps the connection reusable), then retry with a new token.
      this.#discard = true;
      return;
    }
    this.#res.writeHead(statusCode, statusMessage, forwardResponseHeaders(headers));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#discard) return;
    if (!this.#res.write(chunk)) {
      controller.pause();
      this.#res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    if (this.#discard) this.#retryWithFreshToken();
    else this.#res.end();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.#res.destroyed) return;
    this.#fail(upstreamError(err, this.#route.upstream.origin), 'upstream request failed');
  }
}

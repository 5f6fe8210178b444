/**
 * Upgrade (WebSocket, RFC 9110 7.8) through a route: the token is injected into the handshake,
 * which goes through node's HTTP client so the sidecar reads the answer before anything else.
 * Only a `101 Switching Protocols` is spliced (issue 10 item 9). Any other answer reaches the
 * app with `Connection: close` and the connection ends: splicing an upstream that ignored
 * Upgrade let the app's next request travel on the sidecar's connection outside routing,
 * pathPrefix, metrics and logs. Bytes the app sent past the handshake reach the upstream only
 * after its 101. Upgrades meet the same route match, target normalisation, TRACE refusal,
 * `replaceExisting`, 401 report, metrics and logs as requests.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import type { CachedToken } from '../cache/token-provider.js';
import { RouteNotFoundError, SidecarError, TokenUnavailableError, UpstreamError } from '../errors.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './headers.js';
import { sendErrorOnSocket, upstreamError } from './respond.js';
import {
  credentialFor,
  refusedMethod,
  upstreamHostHeader,
  warnThrottled,
  type ProxyContext,
  type ProxyOutcome,
  type ProxyRoute,
  type RouteResolver,
} from './reverse-proxy.js';

export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export function createUpgradeHandler(resolve: RouteResolver, ctx: ProxyContext): UpgradeListener {
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    let route: ProxyRoute | undefined;
    try {
      route = resolve(req);
    } catch (err) {
      if (!(err instanceof SidecarError)) throw err;
      return refuseUnrouted(socket, ctx, err);
    }
    if (!route) return refuseUnrouted(socket, ctx, new RouteNotFoundError('no route for this upgrade request'));
    new ProxiedUpgrade(route, req, socket, head, ctx).start();
  };
}

function refuseUnrouted(socket: Duplex, ctx: ProxyContext, err: SidecarError): void {
  sendErrorOnSocket(socket, err, undefined);
  ctx.observer.finished('unmatched', err.status, 0);
}

/** The upgrade request carries no body: what follows its head belongs to the new protocol. */
const BODY_FRAMING = new Set(['content-length', 'transfer-encoding']);

class ProxiedUpgrade {
  readonly #route: ProxyRoute;
  readonly #req: IncomingMessage;
  readonly #client: Duplex;
  readonly #head: Buffer;
  readonly #ctx: ProxyContext;
  readonly #started = performance.now();
  #request: ClientRequest | undefined;
  #answered = false;
  #recorded = false;

  constructor(route: ProxyRoute, req: IncomingMessage, client: Duplex, head: Buffer, ctx: ProxyContext) {
    this.#route = route;
    this.#req = req;
    this.#client = client;
    this.#head = head;
    this.#ctx = ctx;
    client.once('close', () => {
      this.#request?.destroy();
      this.#record('aborted');
    });
  }

  start(): void {
    const refused = refusedMethod(this.#req.method);
    if (refused) return this.#fail(refused, 'upgrade refused');
    const route = this.#route;
    // The app keeps its own credential when the route says so (authorization.replaceExisting: false).
    if (!route.replaceExisting && this.#req.headers[route.tokenHeader] !== undefined) return this.#send(undefined);
    this.#ctx.tokens.getToken(route.name).then(
      (token) => this.#send(token),
      (err: unknown) => this.#fail(err instanceof SidecarError ? err : new TokenUnavailableError(route.name, err), 'upgrade refused'),
    );
  }

  /** Counted and logged once, like a request: by the status the app got, or `aborted`. */
  #record(outcome: ProxyOutcome): void {
    if (this.#recorded) return;
    this.#recorded = true;
    const seconds = (performance.now() - this.#started) / 1000;
    this.#ctx.observer.finished(this.#route.name, outcome, seconds);
    if (this.#ctx.logger.isLevelEnabled('debug')) {
      const req = this.#req;
      this.#ctx.logger.debug(
        { route: this.#route.name, method: req.method, path: (req.url ?? '').split('?', 1)[0], upgrade: req.headers.upgrade, status: outcome, ms: +(seconds * 1000).toFixed(3) },
        'proxied',
      );
    }
  }

  #fail(err: SidecarError, what: string): void {
    if (this.#client.destroyed) return;
    warnThrottled(this.#ctx, this.#route.name, err, what);
    this.#record(err.status);
    sendErrorOnSocket(this.#client, err, this.#route.name);
  }

  #send(token: CachedToken | undefined): void {
    if (this.#client.destroyed) return; // the app went away while we waited for a token
    const route = this.#route;
    const req = this.#req;
    const { upstream } = route;
    const forwarded = forwardRequestHeaders(req.rawHeaders, req.headers.connection, { tokenHeader: route.tokenHeader, dropTokenHeader: token !== undefined });
    const headers: string[] = [];
    for (let i = 0; i < forwarded.length; i += 2) {
      if (!BODY_FRAMING.has(forwarded[i]!.toLowerCase())) headers.push(forwarded[i]!, forwarded[i + 1]!);
    }
    headers.push('host', upstreamHostHeader(route), 'connection', 'Upgrade', 'upgrade', req.headers.upgrade ?? 'websocket');
    if (token) headers.push(route.tokenHeader, credentialFor(route, token));

    const secure = upstream.url.protocol === 'https:';
    const options: RequestOptions = {
      host: upstream.url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(upstream.url.port) || (secure ? 443 : 80),
      method: req.method ?? 'GET',
      path: upstream.target(req.url ?? '/'),
      headers,
      // A connection of its own: it becomes the tunnel, it is never pooled.
      agent: false,
      // The certificate the token is bound to (RFC 8705 3), like the pooled requests.
      ...(secure ? { ...upstream.connectOptions(token?.identity), ALPNProtocols: ['http/1.1'] } : {}),
    };
    const request = (secure ? httpsRequest : httpRequest)(options);
    this.#request = request;
    request.setTimeout(upstream.timeoutMs, () => {
      request.destroy(Object.assign(new Error('upstream did not answer the upgrade in time'), { code: 'ETIMEDOUT' }));
    });
    request.on('upgrade', (res: IncomingMessage, socket: Duplex, upstreamHead: Buffer) => this.#splice(res, socket, upstreamHead));
    request.on('response', (res: IncomingMessage) => this.#relayRefusal(res, token));
    request.on('error', (err) => {
      if (this.#answered) this.#client.destroy();
      else this.#fail(upstreamError(err, upstream.origin), 'upgrade to upstream failed');
    });
    request.end();
  }

  /** 101: both sides now speak the new protocol, spliced byte for byte. */
  #splice(res: IncomingMessage, upstreamSocket: Duplex, upstreamHead: Buffer): void {
    this.#answered = true;
    const client = this.#client;
    if (client.destroyed) return void upstreamSocket.destroy();
    if (res.statusCode !== 101) {
      upstreamSocket.destroy();
      return this.#fail(new UpstreamError('ERR_UPSTREAM_FAILED', `upstream ${this.#route.upstream.origin} switched protocols without a 101`), 'upgrade to upstream failed');
    }
    // The handshake timeout is over; a quiet WebSocket is not a failure.
    (upstreamSocket as Duplex & { setTimeout?(ms: number): void }).setTimeout?.(0);
    client.write(responseHead(res, res.rawHeaders));
    if (upstreamHead.length) client.write(upstreamHead);
    if (this.#head.length) upstreamSocket.write(this.#head);
    upstreamSocket.pipe(client);
    client.pipe(upstreamSocket);
    // No half-open tunnels: WebSocket closes in-band, so when either side ends, both go.
    const teardown = () => {
      client.destroy();
      upstreamSocket.destroy();
    };
    upstreamSocket.on('error', teardown);
    client.once('end', teardown).once('close', teardown);
    upstreamSocket.once('end', teardown).once('close', teardown);
    this.#record(101);
  }

  /**
   * Anything but 101: the upstream kept speaking HTTP. Relayed to the app as the end of this
   * connection; what the app sent after the handshake is never read, let alone forwarded.
   */
  #relayRefusal(res: IncomingMessage, token: CachedToken | undefined): void {
    this.#answered = true;
    // A refused token is reported as for any request (issue 10 item 5); a handshake is not retried.
    if (res.statusCode === 401 && token) this.#ctx.tokens.invalidate(this.#route.name, token.accessToken);
    const client = this.#client;
    if (client.destroyed) return void res.destroy();
    const headers = forwardResponseHeaders(res.headers);
    const raw: string[] = [];
    for (const [name, value] of Object.entries(headers)) {
      for (const v of Array.isArray(value) ? value : [value]) raw.push(name, v);
    }
    raw.push('connection', 'close');
    client.write(responseHead(res, raw));
    res.on('data', (chunk: Buffer) => {
      if (!client.write(chunk)) {
        res.pause();
        client.once('drain', () => res.resume());
      }
    });
    res.once('end', () => {
      this.#record(res.statusCode ?? 502);
      client.end(() => client.destroy());
    });
    res.once('error', () => client.destroy());
  }
}

/** A status line and header block, from a flat [name, value, ...] list. */
function responseHead(res: IncomingMessage, rawHeaders: readonly string[]): string {
  let text = `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n`;
  for (let i = 0; i < rawHeaders.length; i += 2) text += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`;
  return `${text}\r\n`;
}

/**
 * An upgrade (WebSocket, RFC 9110 7.8) through a route: the pipeline's stages, then the
 * handshake on a connection of its own (transport.upgrade), so the sidecar reads the answer
 * before anything else. Only a `101 Switching Protocols` is spliced (issue 10 item 9). Any
 * other answer reaches the app with `Connection: close` and the connection ends: splicing an
 * upstream that ignored Upgrade let the app's next request travel on the sidecar's connection
 * outside routing, pathPrefix, metrics and logs. Bytes the app sent past the handshake reach
 * the upstream only after its 101.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { UpstreamError, type SidecarError } from '../errors.js';
import type { ProxyContext, ProxyRoute } from './context.js';
import { Exchange } from './exchange.js';
import { forwardResponseHeaders } from './headers.js';
import type { InboundRequest } from './inbound.js';
import { sendErrorOnSocket, upstreamError } from './respond.js';
import type { OutboundRequest, ResponseController, UpgradeHandler } from './transport/types.js';

export class ProxiedUpgrade extends Exchange implements UpgradeHandler {
  readonly #client: Duplex;
  readonly #head: Buffer;
  #controller: ResponseController | undefined;
  #answered = false;
  #status = 502;

  constructor(route: ProxyRoute, req: InboundRequest, client: Duplex, head: Buffer, ctx: ProxyContext) {
    super(route, req, ctx, true);
    this.#client = client;
    this.#head = head;
    client.once('close', () => {
      if (this.#controller && !this.#controller.aborted) this.#controller.abort(new Error('client closed the connection'));
      this.record('aborted');
    });
  }

  protected get gone(): boolean {
    return this.#client.destroyed;
  }

  protected get relay(): UpgradeHandler {
    return this;
  }

  protected answer(err: SidecarError): void {
    if (this.#client.destroyed) return;
    this.record(err.status);
    sendErrorOnSocket(this.#client, err, this.route.name);
  }

  protected send(request: OutboundRequest, handler: UpgradeHandler): void {
    this.route.upstream.transport.upgrade(request, handler);
  }

  onRequestStart(controller: ResponseController): void {
    this.#controller = controller;
  }

  /** 101: both sides now speak the new protocol, spliced byte for byte. */
  onSwitchingProtocols(_c: ResponseController, statusCode: number, rawHeaders: readonly string[], upstream: Duplex, upstreamHead: Buffer, statusMessage?: string): void {
    this.#answered = true;
    const client = this.#client;
    if (client.destroyed) return void upstream.destroy();
    if (statusCode !== 101) {
      upstream.destroy();
      return this.fail(new UpstreamError('ERR_UPSTREAM_FAILED', `upstream ${this.route.upstream.origin} switched protocols without a 101`), 'upgrade to upstream failed');
    }
    client.write(responseHead(statusCode, statusMessage ?? '', rawHeaders));
    if (upstreamHead.length) client.write(upstreamHead);
    if (this.#head.length) upstream.write(this.#head);
    upstream.pipe(client);
    client.pipe(upstream);
    // No half-open tunnels: WebSocket closes in-band, so when either side ends, both go.
    const teardown = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', teardown);
    client.once('end', teardown).once('close', teardown);
    upstream.once('end', teardown).once('close', teardown);
    this.record(101);
  }

  /**
   * Anything but 101: the upstream kept speaking HTTP. Relayed to the app as the end of this
   * connection; what the app sent after the handshake is never read, let alone forwarded.
   */
  onResponseStart(controller: ResponseController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.#answered = true;
    this.#status = statusCode;
    if (this.#client.destroyed) return controller.abort(new Error('client closed the connection'));
    const raw: string[] = [];
    for (const [name, value] of Object.entries(forwardResponseHeaders(headers))) {
      for (const v of Array.isArray(value) ? value : [value]) raw.push(name, v);
    }
    raw.push('connection', 'close');
    this.#client.write(responseHead(statusCode, statusMessage ?? '', raw));
  }

  onResponseData(controller: ResponseController, chunk: Buffer): void {
    if (!this.#client.write(chunk)) {
      controller.pause();
      this.#client.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.record(this.#status);
    this.#client.end(() => this.#client.destroy());
  }

  onResponseError(_c: ResponseController, err: Error): void {
    if (this.#answered) return void this.#client.destroy();
    if (this.#client.destroyed) return;
    this.fail(upstreamError(err, this.route.upstream.origin), 'upgrade to upstream failed');
  }
}

/** A status line and header block, from a flat [name, value, ...] list. */
function responseHead(statusCode: number, statusMessage: string, rawHeaders: readonly string[]): string {
  let text = `HTTP/1.1 ${statusCode} ${statusMessage}\r\n`;
  for (let i = 0; i < rawHeaders.length; i += 2) text += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`;
  return `${text}\r\n`;
}

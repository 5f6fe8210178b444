/**
 * A request on its way upstream through the route's transport, and the handler that relays
 * the answer to the app's response. One object per request keeps the hot path to a single
 * allocation and one 'close' listener (plus the 401 decorator when a token is injected).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { SidecarError } from '../errors.js';
import type { ProxyContext, ProxyRoute } from './context.js';
import { Exchange } from './exchange.js';
import { responseCompleted, type InboundRequest, type InboundResponse } from './inbound.js';
import { relayResponseData, relayResponseEnd, relayResponseStart } from './relay.js';
import { sendError, upstreamError } from './respond.js';
import type { OutboundRequest, ResponseController, ResponseHandler } from './transport/types.js';

const kExchange = Symbol('proxiedRequest');
type TaggedResponse = InboundResponse & { [kExchange]?: ProxiedRequest };

export class ProxiedRequest extends Exchange implements ResponseHandler {
  readonly #res: InboundResponse;
  #controller: ResponseController | undefined;
  #closed = false;

  constructor(route: ProxyRoute, req: InboundRequest, res: InboundResponse, ctx: ProxyContext) {
    super(route, req, ctx, false);
    this.#res = res;
    (res as TaggedResponse)[kExchange] = this;
    res.on('close', ProxiedRequest.#onResponseClose);
  }

  /** One function for every response, not a closure per request (issue 15). */
  static #onResponseClose(this: TaggedResponse): void {
    const exchange = this[kExchange];
    if (exchange) exchange.#onClose();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const completed = responseCompleted(this.#res);
    // The app hung up: stop the upstream exchange too (but never a shared STS exchange).
    if (!completed && this.#controller && !this.#controller.aborted) this.#controller.abort(new Error('client closed the connection'));
    this.record(completed ? this.#res.statusCode : 'aborted');
  }

  protected get gone(): boolean {
    return this.#closed;
  }

  protected get relay(): ResponseHandler {
    return this;
  }

  protected answer(err: SidecarError): void {
    sendError(this.#res, err, this.route.name);
  }

  protected send(request: OutboundRequest, handler: ResponseHandler): void {
    this.route.upstream.transport.request(request, handler);
  }

  onRequestStart(controller: ResponseController): void {
    this.#controller = controller;
    if (this.#closed) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(_c: ResponseController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    relayResponseStart(this.#res, this.req.httpVersion, statusCode, headers, statusMessage);
  }

  onResponseData(controller: ResponseController, chunk: Buffer): void {
    relayResponseData(this.#res, controller, chunk);
  }

  onResponseEnd(_c: ResponseController, trailers: IncomingHttpHeaders): void {
    relayResponseEnd(this.#res, trailers);
  }

  onResponseError(_c: ResponseController, err: Error): void {
    if (this.#closed) return;
    this.fail(upstreamError(err, this.route.upstream.origin), 'upstream request failed');
  }
}

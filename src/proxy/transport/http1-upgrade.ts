/**
 * An upgrade handshake (RFC 9110 7.8) over node's HTTP client, on a connection of its own
 * (it becomes the tunnel, it is never pooled), reported through an UpgradeHandler: a 101 as
 * onSwitchingProtocols with the upstream's socket, any other answer as a response.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import type { OutboundRequest, ResponseController, UpgradeHandler } from './types.js';

/** The handshake's controls: abort destroys it, pause and resume apply to a refusal's body. */
class HandshakeController implements ResponseController {
  readonly #request: ClientRequest;
  response: IncomingMessage | undefined;
  #aborted = false;

  constructor(request: ClientRequest) {
    this.#request = request;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  pause(): void {
    this.response?.pause();
  }

  resume(): void {
    this.response?.resume();
  }

  abort(reason: Error): void {
    this.#aborted = true;
    this.#request.destroy(reason);
  }
}

export function upgradeOverHttp1(url: URL, connect: ConnectionOptions, timeoutMs: number, outbound: OutboundRequest, handler: UpgradeHandler): void {
  const secure = url.protocol === 'https:';
  const options: RequestOptions = {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port) || (secure ? 443 : 80),
    method: outbound.method,
    path: outbound.path,
    headers: outbound.headers,
    agent: false,
    // The certificate the token is bound to (RFC 8705 3), like the pooled requests.
    ...(secure ? { ...connect, ALPNProtocols: ['http/1.1'] } : {}),
  };
  const request = (secure ? httpsRequest : httpRequest)(options);
  const controller = new HandshakeController(request);
  handler.onRequestStart?.(controller, undefined);
  request.setTimeout(timeoutMs, () => {
    request.destroy(Object.assign(new Error('upstream did not answer the upgrade in time'), { code: 'ETIMEDOUT' }));
  });
  request.on('upgrade', (res: IncomingMessage, socket: Duplex, head: Buffer) => {
    // The handshake timeout is over; a quiet WebSocket is not a failure.
    (socket as Duplex & { setTimeout?(ms: number): void }).setTimeout?.(0);
    handler.onSwitchingProtocols?.(controller, res.statusCode ?? 0, res.rawHeaders, socket, head, res.statusMessage);
  });
  request.on('response', (res: IncomingMessage) => {
    controller.response = res;
    handler.onResponseStart?.(controller, res.statusCode ?? 502, res.headers, res.statusMessage);
    if (controller.aborted) return;
    res.on('data', (chunk: Buffer) => handler.onResponseData?.(controller, chunk));
    res.once('end', () => handler.onResponseEnd?.(controller, res.trailers));
    res.once('error', (err) => handler.onResponseError?.(controller, err));
  });
  request.on('error', (err) => handler.onResponseError?.(controller, err));
  request.end();
}

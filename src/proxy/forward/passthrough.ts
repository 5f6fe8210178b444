/**
 * Forwarding without a token: a request for a destination no route matches goes to that
 * destination as the app addressed it, with the app's own headers minus the hop-by-hop and
 * Proxy-* ones. No token, no identity certificate (the workload's mTLS identity is for
 * routed upstreams only), the destination's certificate checked against the system's trust.
 * Redirects are answered to the app, never followed (undici does not follow by default).
 * Every connection is dialled through the dial policy (no loop back into the sidecar, no
 * local-only destination when proxy.allowNonLoopback is set), and each request carries the
 * sidecar's Via (RFC 9110 7.6.3) so a loop no address reveals is still recognised.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher, buildConnector as UndiciConnector } from 'undici';
import { Agent, buildConnector } from '../../http/undici.js';
import { SidecarError } from '../../errors.js';
import { forwardRequestHeaders } from '../headers.js';
import { responseCompleted, type InboundRequest, type InboundResponse } from '../inbound.js';
import { hasBody } from '../policy.js';
import { relayResponseData, relayResponseStart } from '../relay.js';
import { sendError, upstreamError } from '../respond.js';
import { authority, type Destination, type Scheme } from './destination.js';
import type { DialPolicy } from './dial-policy.js';

export interface Passthrough {
  forward(req: InboundRequest, res: InboundResponse, scheme: Scheme, destination: Destination, path: string): void;
  close(): Promise<void>;
}

export interface PassthroughOptions {
  readonly headersTimeoutMs: number;
  readonly policy: DialPolicy;
}

export function createPassthrough(options: PassthroughOptions): Passthrough {
  const { policy } = options;
  const agent = new Agent({
    connect: guardedConnector(policy),
    keepAliveTimeout: 30_000,
    connections: 64,
    headersTimeout: options.headersTimeoutMs,
    // Unrouted traffic may be a long poll or a stream that is quiet for minutes: no body timeout.
    bodyTimeout: 0,
  });
  return {
    forward(req, res, scheme, destination, path) {
      const host = authority(destination, scheme);
      const headers = forwardRequestHeaders(req.rawHeaders, req.headers.connection, { tokenHeader: '', dropTokenHeader: false });
      headers.push('host', host);
      headers.push('via', policy.via(req.httpVersion));
      const withBody = hasBody(req);
      const origin = `${scheme}://${host}`;
      agent.dispatch(
        { origin, path, method: (req.method ?? 'GET') as Dispatcher.HttpMethod, headers, body: withBody ? req : null },
        new PassthroughResponse(res, req.httpVersion, origin),
      );
    },
    close: () => agent.destroy(),
  };
}

/**
 * undici's connector with the policy's lookup hook (undici passes connect options through to
 * net.connect / tls.connect). Built per connection: the hook needs the port to recognise the
 * sidecar's own listeners.
 */
function guardedConnector(policy: DialPolicy): UndiciConnector.connector {
  return (opts, callback) => {
    const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
    const host = opts.hostname.replace(/^\[|\]$/g, '');
    const refused = policy.literalRefusal(host, port);
    if (refused) return void callback(refused, null);
    buildConnector({ lookup: policy.lookup(port) })(opts, (err, socket) => {
      if (socket && 'localPort' in socket) policy.trackRelay(socket);
      if (err) callback(err, null);
      else callback(null, socket!);
    });
  };
}

/** Streams the destination's answer back to the app with backpressure (the pipeline's relay, without a route). */
class PassthroughResponse implements Dispatcher.DispatchHandler {
  readonly #res: InboundResponse;
  readonly #httpVersion: string;
  readonly #origin: string;
  #controller: Dispatcher.DispatchController | undefined;
  #closed = false;

  constructor(res: InboundResponse, httpVersion: string, origin: string) {
    this.#res = res;
    this.#httpVersion = httpVersion;
    this.#origin = origin;
    res.once('close', () => {
      this.#closed = true;
      if (!responseCompleted(res) && this.#controller && !this.#controller.aborted) this.#controller.abort(new Error('client closed the connection'));
    });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#closed) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    relayResponseStart(this.#res, this.#httpVersion, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    relayResponseData(this.#res, controller, chunk);
  }

  onResponseEnd(): void {
    this.#res.end();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.#closed) return;
    sendError(this.#res, err instanceof SidecarError ? err : upstreamError(err, this.#origin), undefined);
  }
}

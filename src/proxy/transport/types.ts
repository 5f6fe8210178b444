/**
 * The seam between the request pipeline and whatever carries a request to an upstream.
 * The pipeline builds one OutboundRequest and hands it, with a ResponseHandler, to the
 * route's UpstreamTransport; the transport reports the answer through the handler's
 * callbacks. Only the transport knows the wire: undici pools (transport/undici.ts) and a
 * connection of its own for upgrades (transport/http1-upgrade.ts), node:http2 sessions per
 * identity generation (transport/h2.ts, issue 12), and ALPN choosing between them
 * (transport/auto.ts); the stages (method, header and 401 policy, relay, outcome) do not change.
 *
 * The handler is undici's dispatch-handler shape (lib/handler, `onRequestStart` ...
 * `onResponseError`), so an undici dispatcher takes it as it is and decorators compose the way
 * undici's RetryHandler does (see upstream-401.ts).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { IdentityGeneration } from '../../tls/identity.js';

/** What a handler may do to the exchange it is told about (undici's DispatchController, minus the rest). */
export interface ResponseController {
  readonly aborted: boolean;
  /** Stop delivering response data until resume(): the app is not reading. */
  pause(): void;
  resume(): void;
  /** Cancel the exchange upstream (the app went away). */
  abort(reason: Error): void;
}

/** Told about one exchange, in order: start, response head, data, then end or error. */
export interface ResponseHandler {
  onRequestStart?(controller: ResponseController, context: unknown): void;
  /** Called for each 1xx (interim) head too, then once for the final one. */
  onResponseStart?(controller: ResponseController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void;
  onResponseData?(controller: ResponseController, chunk: Buffer): void;
  /** Trailers as the transport read them (`{}` when none). */
  onResponseEnd?(controller: ResponseController, trailers: IncomingHttpHeaders): void;
  onResponseError?(controller: ResponseController, error: Error): void;
}

/**
 * An upgrade's handler: any answer but a protocol switch arrives as a response. Not named
 * `onUpgrade`, which undici reads as its legacy handler API.
 */
export interface UpgradeHandler extends ResponseHandler {
  /** The upstream switched protocols: `socket` speaks the new one, `head` its first bytes. */
  onSwitchingProtocols?(controller: ResponseController, statusCode: number, rawHeaders: readonly string[], socket: Duplex, head: Buffer, statusMessage?: string): void;
}

export interface OutboundRequest {
  readonly method: string;
  /** Request target on the upstream (origin-form). */
  readonly path: string;
  /** Flat [name, value, ...], after the pipeline's header policy (Host and the token included). */
  readonly headers: string[];
  readonly body: Readable | null;
  /**
   * The app's request trailers, read once `body` has ended (`{}` when none), already filtered.
   * Sent by the HTTP/2 transport; undici cannot send request trailers over HTTP/1.1.
   */
  readonly trailers?: (() => Record<string, string | string[]>) | undefined;
  /**
   * The app said it accepts trailers (`TE: trailers`): sent upstream on HTTP/2, the one TE value
   * RFC 9113 8.2.2 allows there (gRPC requires it). HTTP/1.1 upstreams keep dropping TE.
   */
  readonly acceptsTrailers?: boolean | undefined;
  /** The certificate the injected token is bound to (RFC 8705 3): the connection must present it. */
  readonly identity: IdentityGeneration | undefined;
}

/** Carries requests to one upstream origin; chosen per route when the upstream is built. */
export interface UpstreamTransport {
  /** One request and its response. */
  request(request: OutboundRequest, handler: ResponseHandler): void;
  /** An upgrade handshake on a connection of its own, which becomes the tunnel on a 101. */
  upgrade(request: OutboundRequest, handler: UpgradeHandler): void;
  close(): Promise<void>;
}

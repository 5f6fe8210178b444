/**
 * The shape of an app's request and of the response the sidecar writes, as the request
 * pipeline uses them: only what node:http's IncomingMessage / ServerResponse and node:http2's
 * compatibility API (Http2ServerRequest / Http2ServerResponse) both offer, so an HTTP/2
 * listener (issue 12) enters the same pipeline. test/proxy-pipeline.test.ts checks both fit.
 *
 * Three differences the stages allow for: an HTTP/2 request's rawHeaders carry pseudo-header
 * fields (`:method`, `:authority`, ...), which the header policy drops (headers.ts), an
 * HTTP/2 response has no reason phrase (relay.ts sends one only to HTTP/1.x), and an HTTP/2
 * response's writableFinished is true once its stream closed, even when cut (responseCompleted).
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Duplex, Readable } from 'node:stream';

/** The app's request; its body is the stream itself. */
export interface InboundRequest extends Readable {
  readonly method?: string | undefined;
  /** The request target; resolvers rewrite it to the normalised origin-form they matched. */
  url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  /** Flat [name, value, ...] as received. */
  readonly rawHeaders: readonly string[];
  /** "1.0", "1.1" or "2.0". */
  readonly httpVersion: string;
  /** The connection it arrived on (the forward proxy tells its tunnels apart by it). */
  readonly socket: Duplex;
}

/** The response to the app. Tracks nothing itself: the pipeline reads 'close' to learn the app is gone. */
export interface InboundResponse {
  statusCode: number;
  readonly headersSent: boolean;
  /** HTTP/1.x: the whole response was handed to the socket; HTTP/2: the stream closed (responseCompleted). */
  readonly writableFinished: boolean;
  /** node:http2's stream under the compat response (absent on HTTP/1.x). */
  readonly stream?: { readonly aborted: boolean } | undefined;
  writeHead(statusCode: number, headers?: OutgoingHttpHeaders): unknown;
  writeHead(statusCode: number, statusMessage: string, headers?: OutgoingHttpHeaders): unknown;
  /** 103 Early Hints (RFC 8297). */
  writeEarlyHints(hints: Record<string, string | string[]>): void;
  /** False when the app is not keeping up: wait for 'drain'. */
  write(chunk: Uint8Array): boolean;
  end(): unknown;
  end(data: string): unknown;
  destroy(error?: Error): unknown;
  once(event: 'close' | 'drain', listener: () => void): unknown;
  on(event: 'close', listener: () => void): unknown;
}

/**
 * True when the app got the whole response, false when it was cut (read on 'close').
 * Http2ServerResponse.writableFinished is its stream's, true too when the app reset the
 * stream (RST_STREAM, RFC 9113 6.4: a cancelled gRPC call) before the response ended, and
 * its writableEnded misses a Trailers-Only answer written on the stream (respond.ts). The
 * stream's `aborted` tells: set when it closed while its writable side was still open.
 */
export function responseCompleted(res: InboundResponse): boolean {
  return res.stream ? !res.stream.aborted : res.writableFinished;
}

/** A request listener the pipeline's entries provide (node:http's RequestListener accepts it). */
export type InboundListener = (req: InboundRequest, res: InboundResponse) => void;

/** An upgrade request (RFC 9110 7.8): the socket is the app's, handed over after the request head. */
export type UpgradeListener = (req: InboundRequest, socket: Duplex, head: Buffer) => void;

/** One way into the proxy: a listener's request and upgrade handlers. */
export interface Entry {
  readonly request: InboundListener;
  readonly upgrade: UpgradeListener;
}

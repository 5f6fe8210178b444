/**
 * One request as an HTTP/2 stream (RFC 9113 8.1) on a pooled session, reported through the
 * pipeline's ResponseHandler; the stream's controls are its ResponseController.
 *
 * - Headers: pseudo-header fields from the request (`:authority` is the Host the pipeline
 *   chose for the route), connection-specific fields never sent (RFC 9113 8.2.2), `te` only as
 *   `trailers`.
 * - Body: piped with backpressure (a full stream window pauses the app's request); the app's
 *   request trailers follow it as a trailing HEADERS frame; without a body END_STREAM rides on
 *   the HEADERS frame.
 * - Response: 1xx heads, the final head, DATA as it comes (pause() stops reading, so the
 *   window is not replenished and the upstream waits), trailers held until the last DATA was
 *   delivered (a trailer arriving while data is buffered must not cut the body: gRPC's status
 *   travels there).
 * - Time: `timeoutMs` bounds the wait for the response head once the request body has ended;
 *   `idleMs` bounds silence both ways on an open stream, so a long gRPC stream lives as long
 *   as it talks.
 * - Cancellation: abort() resets the stream with CANCEL (gRPC over HTTP/2: a cancelled call);
 *   an upstream reset or a session failure reaches the handler as an UpstreamError.
 * - A stream the upstream refused (REFUSED_STREAM, or above a GOAWAY's last stream id) was not
 *   processed (RFC 9113 8.7): one without a body is sent again on a fresh session.
 */
import { constants, type ClientHttp2Stream, type IncomingHttpHeaders as Http2Headers, type OutgoingHttpHeaders } from 'node:http2';
import type { IncomingHttpHeaders } from 'node:http';
import { UpstreamError } from '../../errors.js';
import type { Live, SessionPool } from './h2-sessions.js';
import type { OutboundRequest, ResponseController, ResponseHandler } from './types.js';

/** RFC 9113 8.2.2: connection-specific fields an HTTP/2 message must not carry (Host becomes :authority). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host', 'te']);

/** RFC 9113 7: error codes by value, for messages. */
const RST_NAMES = ['NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED', 'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED'];

export interface StreamSettings {
  readonly origin: string;
  readonly scheme: 'http' | 'https';
  readonly timeoutMs: number;
  readonly idleMs: number;
}

export function http2RequestHeaders(request: OutboundRequest, scheme: string, fallbackAuthority: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': request.method, ':scheme': scheme, ':path': request.path, ':authority': fallbackAuthority };
  const { headers } = request;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!.toLowerCase();
    const value = headers[i + 1]!;
    if (name === 'host') {
      out[':authority'] = value;
      continue;
    }
    if (CONNECTION_SPECIFIC.has(name) || name.startsWith(':')) continue;
    const existing = out[name];
    if (existing === undefined) out[name] = value;
    else out[name] = Array.isArray(existing) ? [...existing, value] : [String(existing), value];
  }
  if (request.acceptsTrailers) out['te'] = 'trailers';
  return out;
}

/** Response fields without the pseudo-header fields (`:status` is passed on its own). */
function withoutPseudo(headers: Http2Headers): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const name in headers) if (!name.startsWith(':')) out[name] = headers[name] as string | string[];
  return out;
}

export class Http2Exchange implements ResponseController {
  readonly #pool: SessionPool;
  readonly #request: OutboundRequest;
  readonly #handler: ResponseHandler;
  readonly #settings: StreamSettings;
  #stream: ClientHttp2Stream | undefined;
  #live: Live | undefined;
  #release: (() => void) | undefined;
  #headTimer: NodeJS.Timeout | undefined;
  #trailers: IncomingHttpHeaders = {};
  #aborted = false;
  #done = false;
  #responded = false;
  #resent = false;

  constructor(pool: SessionPool, request: OutboundRequest, handler: ResponseHandler, settings: StreamSettings) {
    this.#pool = pool;
    this.#request = request;
    this.#handler = handler;
    this.#settings = settings;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  pause(): void {
    this.#stream?.pause();
  }

  resume(): void {
    this.#stream?.resume();
  }

  abort(_reason: Error): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#finish();
    // gRPC over HTTP/2: a cancelled call is RST_STREAM with CANCEL.
    if (this.#stream && !this.#stream.closed) this.#stream.close(constants.NGHTTP2_CANCEL);
  }

  /** Opens the stream on `live` (the handler's onRequestStart has been called). */
  start(live: Live): void {
    if (this.#aborted) return;
    const { session } = live;
    const body = this.#request.body;
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(http2RequestHeaders(this.#request, this.#settings.scheme, new URL(this.#settings.origin).host), {
        endStream: body === null,
        waitForTrailers: body !== null,
      });
    } catch (err) {
      // Out of stream ids, or the session closed under us: a fresh session, once.
      this.#pool.retire(live);
      return this.#resend(err as Error);
    }
    this.#stream = stream;
    this.#live = live;
    this.#release = this.#pool.track(live);
    stream.setTimeout(this.#settings.idleMs, () => this.#fail(new UpstreamError('ERR_UPSTREAM_TIMEOUT', `upstream ${this.#settings.origin} stream idle for ${this.#settings.idleMs} ms`), constants.NGHTTP2_CANCEL));
    stream.on('headers', (headers: Http2Headers) => {
      const status = Number(headers[':status']);
      if (status >= 100 && status < 200 && !this.#done) this.#handler.onResponseStart?.(this, status, withoutPseudo(headers));
    });
    stream.once('response', (headers: Http2Headers) => this.#onResponse(headers));
    stream.on('trailers', (trailers: Http2Headers) => {
      this.#trailers = withoutPseudo(trailers);
    });
    stream.on('data', (chunk: Buffer) => {
      if (!this.#done) this.#handler.onResponseData?.(this, chunk);
    });
    stream.once('end', () => {
      if (this.#done || !this.#responded) return;
      // node ends the readable side of a reset stream too: only a clean END_STREAM is an end.
      if (stream.aborted || (stream.rstCode ?? constants.NGHTTP2_NO_ERROR) !== constants.NGHTTP2_NO_ERROR) return this.#onStreamGone(stream, undefined);
      this.#finish();
      // RFC 9113 8.1: a complete response may precede the end of the request (gRPC: a status
      // while the app still streams). #finish stopped the body, so nothing would ever end our
      // side: the stream would stay open, and its session with it. The rest is not needed.
      if (!stream.writableEnded) stream.close(constants.NGHTTP2_NO_ERROR);
      this.#handler.onResponseEnd?.(this, this.#trailers);
    });
    stream.on('error', (err: Error) => this.#onStreamGone(stream, err));
    stream.once('aborted', () => this.#onStreamGone(stream, undefined));
    stream.once('close', () => this.#onStreamGone(stream, undefined));
    if (body === null) this.#armHeadTimer();
    else this.#sendBody(stream);
  }

  #sendBody(stream: ClientHttp2Stream): void {
    const body = this.#request.body!;
    stream.once('wantTrailers', () => {
      // An empty block is sent as an empty DATA frame with END_STREAM (node's own choice).
      const trailers = this.#request.trailers?.() ?? {};
      try {
        stream.sendTrailers(trailers);
      } catch {
        stream.sendTrailers({});
      }
      this.#armHeadTimer();
    });
    body.once('error', () => this.abort(new Error('the app request failed')));
    body.pipe(stream);
  }

  #armHeadTimer(): void {
    if (this.#responded || this.#done) return;
    this.#headTimer = setTimeout(
      () => this.#fail(new UpstreamError('ERR_UPSTREAM_TIMEOUT', `upstream ${this.#settings.origin} sent no response head within ${this.#settings.timeoutMs} ms`), constants.NGHTTP2_CANCEL),
      this.#settings.timeoutMs,
    );
  }

  #onResponse(headers: Http2Headers): void {
    if (this.#done) return;
    this.#responded = true;
    if (this.#headTimer) clearTimeout(this.#headTimer);
    this.#handler.onResponseStart?.(this, Number(headers[':status']), withoutPseudo(headers));
  }

  /** The stream closed or failed before its end was delivered. */
  #onStreamGone(stream: ClientHttp2Stream, err: Error | undefined): void {
    if (this.#done || stream !== this.#stream) return;
    const code = stream.rstCode ?? constants.NGHTTP2_NO_ERROR;
    if (err === undefined && code === constants.NGHTTP2_NO_ERROR && stream.readableEnded) return; // 'end' delivers it
    // RFC 9113 8.7: refused streams were not processed; resend one without a body.
    if (code === constants.NGHTTP2_REFUSED_STREAM && !this.#responded && this.#request.body === null && !this.#resent) {
      this.#pool.retire(this.#live!);
      this.#detach();
      return this.#resend(err ?? new Error('stream refused'));
    }
    const why = code !== constants.NGHTTP2_NO_ERROR ? `reset the stream (${RST_NAMES[code] ?? code})` : 'closed the stream early';
    this.#fail(err && !(err as { code?: string }).code?.startsWith('ERR_HTTP2_STREAM') ? err : new UpstreamError('ERR_UPSTREAM_FAILED', `upstream ${this.#settings.origin} ${why}`, { cause: err }), undefined);
  }

  #resend(cause: Error): void {
    if (this.#resent || this.#aborted) return this.#fail(cause, undefined);
    this.#resent = true;
    this.#pool.acquire().then(
      (live) => this.start(live),
      (err: Error) => this.#fail(err, undefined),
    );
  }

  #fail(err: Error, rst: number | undefined): void {
    if (this.#done) return;
    this.#finish();
    if (rst !== undefined && this.#stream && !this.#stream.closed) this.#stream.close(rst);
    if (!this.#aborted) this.#handler.onResponseError?.(this, err);
  }

  #finish(): void {
    this.#done = true;
    if (this.#headTimer) clearTimeout(this.#headTimer);
    this.#detach();
  }

  #detach(): void {
    if (this.#stream) this.#request.body?.unpipe(this.#stream);
    this.#release?.();
    this.#release = undefined;
  }
}

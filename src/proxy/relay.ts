/**
 * Relaying an upstream's answer to the app's response, with backpressure: the one relay that
 * routed requests (pipeline.ts) and unrouted passthrough (forward/passthrough.ts) share.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { forwardResponseHeaders, forwardTrailers } from './headers.js';
import type { InboundResponse } from './inbound.js';
import type { ResponseController } from './transport/types.js';

/**
 * The response head, or an interim answer before it. HTTP/2 has no reason phrase (RFC 9113
 * 8.3.2), so the upstream's is relayed to an HTTP/1.x app only.
 */
export function relayResponseStart(res: InboundResponse, httpVersion: string, statusCode: number, headers: IncomingHttpHeaders, statusMessage: string | undefined): void {
  if (statusCode < 200) return relayInformational(res, httpVersion, statusCode, headers);
  if (statusMessage !== undefined && httpVersion.startsWith('1.')) res.writeHead(statusCode, statusMessage, forwardResponseHeaders(headers));
  else res.writeHead(statusCode, forwardResponseHeaders(headers));
}

/** A body chunk; the upstream is paused while the app is not reading. */
export function relayResponseData(res: InboundResponse, controller: ResponseController, chunk: Buffer): void {
  if (!res.write(chunk)) {
    controller.pause();
    res.once('drain', () => controller.resume());
  }
}

/**
 * An interim answer the upstream sent before its final one (issue 10 item 6): writing it as
 * the response head broke the request with ERR_HTTP_HEADERS_SENT. 103 Early Hints (RFC 8297)
 * reaches the app; any other 1xx (102 Processing, unknown ones) is dropped, as is a 103 to an
 * HTTP/1.0 app (RFC 9110 15.2) or one without a usable Link (it hints nothing then).
 */
export function relayInformational(res: InboundResponse, httpVersion: string, statusCode: number, headers: IncomingHttpHeaders): void {
  if (statusCode !== 103 || httpVersion === '1.0' || res.headersSent || headers['link'] === undefined) return;
  try {
    res.writeEarlyHints(forwardResponseHeaders(headers));
  } catch {
    // A Link node will not write (it validates the syntax): the hint is optional, drop it.
  }
}

/**
 * The end of the answer, with the upstream's trailers (issue 12: gRPC's status travels there).
 * Both node:http's ServerResponse and node:http2's compat response take them through
 * addTrailers; node:http writes them only on a chunked response (an HTTP/1.0 app, or a body
 * framed by Content-Length, has nowhere to put them, RFC 9112 7.1.2).
 */
export function relayResponseEnd(res: InboundResponse, trailers: IncomingHttpHeaders | undefined): void {
  if (trailers) {
    for (const _ in trailers) {
      const fields = forwardTrailers(trailers);
      (res as InboundResponse & { addTrailers?(headers: Record<string, string | string[]>): void }).addTrailers?.(fields);
      break;
    }
  }
  res.end();
}

/**
 * `upstreamProtocol: auto` over TLS (issue 12): ALPN (RFC 7301) offers `h2` and `http/1.1`, and
 * the upstream's choice decides. The first connection of an identity generation tells which
 * protocol the origin speaks; the answer is remembered with that generation's sessions
 * (h2-sessions.ts `learned`), so later requests go straight to the HTTP/2 sessions or the
 * HTTP/1.1 pool. A probe that finds HTTP/1.1 costs one TLS handshake per generation; the
 * request it carried goes to the HTTP/1.1 pool untouched (nothing of it was sent).
 */
import type { Http2Transport } from './h2.js';
import type { UpstreamTransport } from './types.js';

export function createAlpnTransport(http1: UpstreamTransport, http2: Http2Transport): UpstreamTransport {
  return {
    request(request, handler) {
      if (http2.sessionsFor(request.identity).learned === 'http/1.1') return http1.request(request, handler);
      http2.requestOr(request, handler, () => http1.request(request, handler));
    },
    // A WebSocket handshake is HTTP/1.1 (RFC 6455); extended CONNECT over h2 (RFC 8441) is not spoken.
    upgrade: (request, handler) => http1.upgrade(request, handler),
    close: async () => {
      await Promise.all([http1.close(), http2.close()]);
    },
  };
}

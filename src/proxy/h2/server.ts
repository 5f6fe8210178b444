/**
 * The inbound HTTP/2 side of a listener (issue 12): node:http2 sessions for connections that
 * opened with the HTTP/2 preface (cleartext with prior knowledge, RFC 9113 3.3) or negotiated
 * `h2` on intercepted TLS. Requests arrive through node:http2's compatibility API, whose
 * Http2ServerRequest / Http2ServerResponse fit the pipeline's InboundRequest / InboundResponse
 * (inbound.ts), so they meet the same resolvers and stages as HTTP/1.1.
 *
 * The bounds of limits.ts, as HTTP/2 expresses them:
 *   - requests in flight per connection: SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 5.1.2);
 *     nghttp2 refuses a stream past it with RST_STREAM REFUSED_STREAM (past the advertised
 *     value before it is acknowledged, a connection error after), so none reaches a handler;
 *   - headers timeout: a connection must open its first stream within it;
 *   - idle timeout while streams are open, keep-alive timeout while none is: GOAWAY then;
 *   - the connection cap: the listening server's, which counted the socket before sniffing.
 * A request's own duration is not bounded (requestTimeout): a gRPC stream may last for hours,
 * and is cut only when nothing moves on its connection for the idle timeout.
 */
import { createServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { InboundListener } from '../inbound.js';
import type { Admission, ConnectionObserver, ListenerKind, ListenerLimits } from '../limits.js';
import { sendError } from '../respond.js';

/** Header list size advertised (RFC 9113 6.5.2) and enforced: node:http's own default for HTTP/1.1 heads. */
const MAX_HEADER_LIST_SIZE = 16 * 1024;

export interface InboundH2Handlers {
  readonly request: InboundListener;
  /** Checked for every request before its handler (a loop back into the sidecar, issue 10 item 10). */
  readonly admit?: Admission | undefined;
}

export interface InboundH2 {
  readonly server: Http2Server;
  /**
   * Serves one connection: a socket whose unread bytes start with the preface (left paused,
   * preface.ts), or a TLS socket that negotiated `h2`. Returns the session.
   */
  serve(socket: Duplex): ServerHttp2Session;
  /** GOAWAY on every session (RFC 9113 6.8): streams in flight finish, no new ones start. */
  closeSessions(): void;
}

export function createInboundH2(kind: ListenerKind, limits: ListenerLimits, observer: ConnectionObserver, handlers: InboundH2Handlers): InboundH2 {
  const server = createServer({
    settings: { maxConcurrentStreams: limits.maxRequestsInFlight, maxHeaderListSize: MAX_HEADER_LIST_SIZE },
    maxHeaderListPairs: 256,
  });
  const sessions = new Set<ServerHttp2Session>();

  server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    // The dial policy reads a request's head only (Via, Host): the compat request offers both.
    const refusal = handlers.admit?.(req as unknown as IncomingMessage);
    if (refusal) {
      observer.rejected(kind, 'forward_loop');
      return sendError(res, refusal, undefined);
    }
    handlers.request(req, res);
  });
  // A session error (a protocol violation, a reset peer) ends that session only.
  server.on('sessionError', () => {});
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    watchTimeouts(session, kind, limits, observer);
  });

  return {
    server,
    serve(socket) {
      // node:http2 waits for 'secureConnect' on a TLS socket still `secureConnecting`; a
      // server-side TLSSocket made without a tls.Server never emits it (the server's
      // onServerSocketSecure clears the flag and emits 'secureConnection' instead). The
      // handshake is done when we get here: say so, as tls.Server would.
      if (socket instanceof TLSSocket) (socket as TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
      let created: ServerHttp2Session | undefined;
      const grab = (session: ServerHttp2Session) => (created = session);
      server.once('session', grab);
      server.emit('connection', socket);
      server.off('session', grab);
      return created!;
    },
    closeSessions() {
      for (const session of sessions) if (!session.closed) session.close();
    },
  };
}

/**
 * Headers timeout until the first stream, then the idle timeout while streams are open and
 * the keep-alive timeout while none is (as node:http does between HTTP/1.1 requests).
 */
function watchTimeouts(session: ServerHttp2Session, kind: ListenerKind, limits: ListenerLimits, observer: ConnectionObserver): void {
  let open = 0;
  let started = false;
  const headersTimeoutMs = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  session.setTimeout(headersTimeoutMs);
  session.on('timeout', () => {
    if (!started) observer.rejected(kind, 'headers_timeout');
    else if (open > 0) observer.rejected(kind, 'idle_timeout');
    // Streams still open get cut: the peer was silent for the whole idle timeout.
    if (open > 0) session.destroy();
    else session.close();
  });
  session.on('stream', (stream) => {
    if (!started) started = true;
    if (open++ === 0) session.setTimeout(limits.idleTimeoutMs);
    stream.once('close', () => {
      if (--open === 0 && !session.destroyed) session.setTimeout(limits.keepAliveTimeoutMs);
    });
  });
}

/**
 * The HTTP/2 transport (issue 12): node:http2 client sessions, one per origin and workload-
 * identity generation, multiplexing every request onto it (h2-sessions.ts), each request a
 * stream (h2-stream.ts). node:http2 rather than undici: undici 7's HTTP/2 drops DATA still
 * buffered for a paused consumer when the trailers arrive, which truncates gRPC answers.
 *
 * Over TLS (reached only through `auto`, transport/auto.ts) the sessions of an identity
 * generation present that generation's certificate, as the HTTP/1.1 pools do (RFC 8705 3: a
 * certificate-bound token rides only a connection presenting its certificate); `h2c` speaks
 * cleartext HTTP/2 with prior knowledge (RFC 9113 3.3), where the identity plays no part.
 * Upgrades (WebSocket) go over HTTP/1.1 on a connection of their own: extended CONNECT
 * (RFC 8441) is not spoken.
 */
import { clientConnectOptions, type PeerTlsSettings } from '../../tls/client-tls.js';
import type { IdentityGeneration } from '../../tls/identity.js';
import { PerIdentity } from '../../tls/per-identity.js';
import { NotHttp2Error, SessionPool } from './h2-sessions.js';
import { Http2Exchange, type StreamSettings } from './h2-stream.js';
import { upgradeOverHttp1 } from './http1-upgrade.js';
import type { OutboundRequest, ResponseHandler, UpstreamTransport } from './types.js';

export interface Http2TransportOptions {
  readonly url: URL;
  /** Time to connect, and for the response head once the request body has ended. */
  readonly timeoutMs: number;
  /** Silence allowed on an open stream, both ways (limits.idleTimeoutSeconds). */
  readonly idleTimeoutMs: number;
  readonly tls?: PeerTlsSettings;
  /** How long a superseded identity's sessions stay usable after a rotation (default timeoutMs + 15 s). */
  readonly rotationGraceMs?: number;
  /** A session without streams is closed after this (default 60 s, as the HTTP/1.1 keep-alive). */
  readonly sessionIdleMs?: number;
}

export interface Http2Transport extends UpstreamTransport {
  /** The sessions an identity's requests use; `learned` says whether ALPN chose h2 there. */
  sessionsFor(identity: IdentityGeneration | undefined): SessionPool;
  /**
   * `request`, but an upstream that chose HTTP/1.1 through ALPN calls `otherwise` instead
   * (nothing was sent, the body is untouched): the auto transport's fallback.
   */
  requestOr(request: OutboundRequest, handler: ResponseHandler, otherwise: () => void): void;
}

export function createHttp2Transport(options: Http2TransportOptions): Http2Transport {
  const { url, timeoutMs } = options;
  const secure = url.protocol === 'https:';
  const peer: PeerTlsSettings = options.tls ?? { clientCertificate: false };
  const settings: StreamSettings = { origin: url.origin, scheme: secure ? 'https' : 'http', timeoutMs, idleMs: options.idleTimeoutMs };
  const open = (identity: IdentityGeneration | undefined) =>
    new SessionPool({ url, connect: secure ? clientConnectOptions(identity, peer) : {}, connectTimeoutMs: timeoutMs, idleMs: options.sessionIdleMs ?? 60_000 });
  const perIdentity = new PerIdentity(open, options.rotationGraceMs ?? timeoutMs + 15_000);
  // Cleartext: the identity plays no part, one pool of sessions serves every generation.
  const plain = secure ? undefined : perIdentity.get(undefined);
  const sessionsFor = (identity: IdentityGeneration | undefined) => plain ?? perIdentity.get(identity);

  const requestOr = (request: OutboundRequest, handler: ResponseHandler, otherwise: (() => void) | undefined): void => {
    const pool = sessionsFor(request.identity);
    const exchange = new Http2Exchange(pool, request, handler, settings);
    pool.acquire().then(
      (live) => {
        // Told only now, once a session exists: an app gone meanwhile aborts here, before a stream.
        handler.onRequestStart?.(exchange, undefined);
        exchange.start(live);
      },
      (err: Error) => {
        if (err instanceof NotHttp2Error && otherwise) return otherwise();
        handler.onRequestStart?.(exchange, undefined);
        if (!exchange.aborted) handler.onResponseError?.(exchange, err);
      },
    );
  };

  return {
    sessionsFor,
    requestOr,
    request: (request, handler) => requestOr(request, handler, undefined),
    upgrade(request, handler) {
      upgradeOverHttp1(url, secure ? clientConnectOptions(request.identity, peer) : {}, timeoutMs, request, handler);
    },
    close: () => perIdentity.close(),
  };
}

/**
 * Where a route's requests go: the upstream's origin, the pieces needed to build the request
 * target and the Host header, and the transport that carries requests there
 * (transport/types.ts), picked by `upstreamProtocol` (issue 12): HTTP/1.1 through undici,
 * cleartext HTTP/2 with prior knowledge, or over TLS whatever ALPN settles on.
 */
import type { PeerTlsSettings } from '../tls/client-tls.js';
import { createAlpnTransport } from './transport/auto.js';
import { createHttp2Transport } from './transport/h2.js';
import { createHttp1Transport } from './transport/undici.js';
import type { UpstreamTransport } from './transport/types.js';

export type UpstreamProtocol = 'auto' | 'http1' | 'h2c';

export interface UpstreamOptions {
  readonly url: URL;
  readonly timeoutMs: number;
  /** Trust, SNI name and client-certificate settings for an https upstream. */
  readonly tls?: PeerTlsSettings;
  readonly connections?: number;
  /** How long a superseded identity's pool stays usable after a rotation (default timeoutMs + 15 s). */
  readonly rotationGraceMs?: number;
  /** Default `auto`: ALPN over https, HTTP/1.1 over http. */
  readonly protocol?: UpstreamProtocol;
  /** Silence allowed on an open HTTP/2 stream (limits.idleTimeoutSeconds; default 600 s). */
  readonly idleTimeoutMs?: number;
}

export interface Upstream {
  readonly origin: string;
  /** Value for the Host header: the upstream's own authority. */
  readonly host: string;
  readonly url: URL;
  /** Request target on the upstream for an inbound target (prepends the upstream's base path). */
  target(inboundPath: string): string;
  readonly transport: UpstreamTransport;
  close(): Promise<void>;
}

export function createUpstream(options: UpstreamOptions): Upstream {
  const { url } = options;
  const base = url.pathname.replace(/\/+$/, '');
  const transport = transportFor(options);
  return {
    origin: url.origin,
    host: url.host,
    url,
    target: base ? (path) => base + path : (path) => path,
    transport,
    close: () => transport.close(),
  };
}

function transportFor(options: UpstreamOptions): UpstreamTransport {
  const protocol = options.protocol ?? 'auto';
  const secure = options.url.protocol === 'https:';
  if (protocol === 'http1' || (protocol === 'auto' && !secure)) return createHttp1Transport(options);
  const http2 = createHttp2Transport({ ...options, idleTimeoutMs: options.idleTimeoutMs ?? 600_000 });
  // The config refuses h2c for https; over TLS only ALPN decides.
  return protocol === 'h2c' && !secure ? http2 : createAlpnTransport(createHttp1Transport(options), http2);
}

/**
 * Where a route's requests go: the upstream's origin, the pieces needed to build the request
 * target and the Host header, and the transport that carries requests there
 * (transport/types.ts). Today every upstream speaks HTTP/1.1 through undici; issue 12's
 * `upstreamProtocol` picks another transport here, and nothing above this file changes.
 */
import type { PeerTlsSettings } from '../tls/client-tls.js';
import { createHttp1Transport } from './transport/undici.js';
import type { UpstreamTransport } from './transport/types.js';

export interface UpstreamOptions {
  readonly url: URL;
  readonly timeoutMs: number;
  /** Trust, SNI name and client-certificate settings for an https upstream. */
  readonly tls?: PeerTlsSettings;
  readonly connections?: number;
  /** How long a superseded identity's pool stays usable after a rotation (default timeoutMs + 15 s). */
  readonly rotationGraceMs?: number;
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
  const transport = createHttp1Transport(options);
  return {
    origin: url.origin,
    host: url.host,
    url,
    target: base ? (path) => base + path : (path) => path,
    transport,
    close: () => transport.close(),
  };
}

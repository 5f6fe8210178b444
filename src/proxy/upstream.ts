/**
 * Where a route's requests go: a keep-alive undici Pool per upstream origin, plus the
 * pieces needed to build the request target and the Host header.
 */
import { Pool } from 'undici';
import type { ConnectionOptions } from 'node:tls';

export interface UpstreamOptions {
  readonly url: URL;
  readonly timeoutMs: number;
  /** Extra TLS settings for https upstreams (trust, SNI, later the client certificate). */
  readonly tls?: ConnectionOptions;
  readonly connections?: number;
}

export interface Upstream {
  readonly origin: string;
  /** Value for the Host header: the upstream's own authority. */
  readonly host: string;
  readonly pool: Pool;
  readonly timeoutMs: number;
  readonly tls: ConnectionOptions | undefined;
  readonly url: URL;
  /** Request target on the upstream for an inbound target (prepends the upstream's base path). */
  target(inboundPath: string): string;
}

export function createUpstream(options: UpstreamOptions): Upstream {
  const { url } = options;
  const base = url.pathname.replace(/\/+$/, '');
  const pool = new Pool(url.origin, {
    connections: options.connections ?? 256,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    ...(url.protocol === 'https:' && options.tls ? { connect: options.tls } : {}),
  });
  return {
    origin: url.origin,
    host: url.host,
    pool,
    timeoutMs: options.timeoutMs,
    tls: options.tls,
    url,
    target: base ? (path) => base + path : (path) => path,
  };
}

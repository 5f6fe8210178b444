/**
 * Where a route's requests go: keep-alive undici Pools for the upstream origin, plus the
 * pieces needed to build the request target and the Host header.
 *
 * An https upstream gets one pool per workload-identity generation (see
 * tls/per-identity.ts): a request carrying a certificate-bound token is dispatched on
 * connections that present the certificate that token is bound to.
 */
import { Pool } from 'undici';
import type { ConnectionOptions } from 'node:tls';
import { clientConnectOptions, type PeerTlsSettings } from '../tls/client-tls.js';
import type { IdentityGeneration } from '../tls/identity.js';
import { PerIdentity } from '../tls/per-identity.js';

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
  readonly timeoutMs: number;
  readonly url: URL;
  /** Request target on the upstream for an inbound target (prepends the upstream's base path). */
  target(inboundPath: string): string;
  /** The pool whose connections present this identity generation's certificate. */
  poolFor(identity: IdentityGeneration | undefined): Pool;
  /** tls.connect options for a raw connection (upgrades) under this identity. */
  connectOptions(identity: IdentityGeneration | undefined): ConnectionOptions;
  close(): Promise<void>;
}

interface Connections {
  readonly pool: Pool;
  readonly connect: ConnectionOptions;
  close(): Promise<void>;
}

export function createUpstream(options: UpstreamOptions): Upstream {
  const { url } = options;
  const base = url.pathname.replace(/\/+$/, '');
  const secure = url.protocol === 'https:';
  const peer: PeerTlsSettings = options.tls ?? { clientCertificate: false };
  const open = (identity: IdentityGeneration | undefined): Connections => {
    const connect = secure ? clientConnectOptions(identity, peer) : {};
    const pool = new Pool(url.origin, {
      connections: options.connections ?? 256,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      ...(secure ? { connect } : {}),
    });
    return { pool, connect, close: () => pool.close() };
  };
  const perIdentity = new PerIdentity(open, options.rotationGraceMs ?? options.timeoutMs + 15_000);
  // Plain http: the identity plays no part, one pool serves every generation.
  const plain = secure ? undefined : perIdentity.get(undefined);
  let lastIdentity: IdentityGeneration | undefined;
  let last: Connections | undefined = plain;
  const connectionsFor = (identity: IdentityGeneration | undefined): Connections => {
    if (plain) return plain;
    if (identity !== lastIdentity || !last) {
      last = perIdentity.get(identity);
      lastIdentity = identity;
    }
    return last;
  };
  return {
    origin: url.origin,
    host: url.host,
    timeoutMs: options.timeoutMs,
    url,
    target: base ? (path) => base + path : (path) => path,
    poolFor: (identity) => connectionsFor(identity).pool,
    connectOptions: (identity) => connectionsFor(identity).connect,
    close: () => perIdentity.close(),
  };
}

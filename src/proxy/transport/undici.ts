/**
 * The HTTP/1.1 transport: keep-alive undici Pools for requests, and a connection of its own
 * (transport/http1-upgrade.ts) for each upgrade.
 *
 * An https upstream gets one pool per workload-identity generation (see tls/per-identity.ts):
 * a request carrying a certificate-bound token is dispatched on connections that present the
 * certificate that token is bound to (RFC 8705 3); an upgrade dials with the same certificate.
 */
import type { ConnectionOptions } from 'node:tls';
import type { Dispatcher, Pool } from 'undici';
import { Pool as UndiciPool } from '../../http/undici.js';
import { clientConnectOptions, type PeerTlsSettings } from '../../tls/client-tls.js';
import type { IdentityGeneration } from '../../tls/identity.js';
import { PerIdentity } from '../../tls/per-identity.js';
import { upgradeOverHttp1 } from './http1-upgrade.js';
import type { UpstreamTransport } from './types.js';

export interface Http1TransportOptions {
  readonly url: URL;
  /** Headers and body timeouts of a request; the time an upgrade handshake may take. */
  readonly timeoutMs: number;
  /** Trust, SNI name and client-certificate settings for an https upstream. */
  readonly tls?: PeerTlsSettings;
  readonly connections?: number;
  /** How long a superseded identity's pool stays usable after a rotation (default timeoutMs + 15 s). */
  readonly rotationGraceMs?: number;
}

interface Connections {
  readonly pool: Pool;
  readonly connect: ConnectionOptions;
  close(): Promise<void>;
}

export function createHttp1Transport(options: Http1TransportOptions): UpstreamTransport {
  const { url, timeoutMs } = options;
  const secure = url.protocol === 'https:';
  const peer: PeerTlsSettings = options.tls ?? { clientCertificate: false };
  const open = (identity: IdentityGeneration | undefined): Connections => {
    const connect = secure ? clientConnectOptions(identity, peer) : {};
    const pool = new UndiciPool(url.origin, {
      connections: options.connections ?? 256,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      ...(secure ? { connect } : {}),
    });
    return { pool, connect, close: () => pool.close() };
  };
  const perIdentity = new PerIdentity(open, options.rotationGraceMs ?? timeoutMs + 15_000);
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
    request(request, handler) {
      connectionsFor(request.identity).pool.dispatch(
        {
          origin: url.origin,
          path: request.path,
          method: request.method as Dispatcher.HttpMethod,
          headers: request.headers,
          body: request.body,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        },
        handler,
      );
    },
    upgrade(request, handler) {
      upgradeOverHttp1(url, connectionsFor(request.identity).connect, timeoutMs, request, handler);
    },
    close: () => perIdentity.close(),
  };
}

/**
 * TLS settings for the sidecar's outbound connections (to the STS and to upstreams):
 * which CAs to trust, which name to check, and whether to present the workload
 * certificate (mTLS, RFC 8705 section 2 and 3).
 */
import { createSecureContext, type ConnectionOptions } from 'node:tls';
import type { IdentityGeneration } from './identity.js';

export interface PeerTlsSettings {
  /** PEM trust anchors for this peer; falls back to the identity's CA bundle, then the system's. */
  readonly ca?: string | undefined;
  /** Name for SNI and the certificate check when it differs from the URL's host. */
  readonly servername?: string | undefined;
  /** Present the workload certificate when an identity is configured. */
  readonly clientCertificate: boolean;
}

/**
 * Connect options for undici / tls.connect. One SecureContext per identity generation and
 * peer: parsing PEM on every connection would cost far more than the handshake itself.
 */
export function clientConnectOptions(identity: IdentityGeneration | undefined, peer: PeerTlsSettings): ConnectionOptions {
  const ca = peer.ca ?? identity?.caPem;
  const present = peer.clientCertificate && identity !== undefined;
  if (!ca && !present) return peer.servername ? { servername: peer.servername } : {};
  const secureContext = createSecureContext({
    ...(ca ? { ca } : {}),
    ...(present ? { cert: identity.certChainPem, key: identity.keyPem } : {}),
  });
  return { secureContext, ...(peer.servername ? { servername: peer.servername } : {}) };
}

/**
 * What the TLS layer tells us about the client's certificate on a token request.
 * Only a certificate that verified against the listener's trust anchors counts, for
 * client authentication (RFC 8705 section 2.1) and for binding (section 3) alike:
 * the listener asks for certificates without rejecting unverified ones at the
 * handshake, so that the client gets an RFC 6749 section 5.2 answer instead of a
 * bare TLS alert, and the decision is made here.
 */
import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';

export type PeerCertificate =
  | { readonly state: 'absent' }
  | { readonly state: 'verified'; readonly certificate: X509Certificate }
  /** `reason` is OpenSSL's verification code (e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE): safe to show. */
  | { readonly state: 'unverified'; readonly reason: string };

export const NO_PEER_CERTIFICATE: PeerCertificate = Object.freeze({ state: 'absent' });

export function peerCertificateOf(req: IncomingMessage): PeerCertificate {
  const socket = req.socket;
  if (!(socket instanceof TLSSocket)) return NO_PEER_CERTIFICATE;
  const certificate = socket.getPeerX509Certificate();
  if (certificate === undefined) return NO_PEER_CERTIFICATE;
  if (!socket.authorized) {
    const reason = socket.authorizationError;
    const code = typeof reason === 'string' ? reason : reason instanceof Error ? ((reason as NodeJS.ErrnoException).code ?? reason.message) : 'UNKNOWN';
    return Object.freeze({ state: 'unverified', reason: code });
  }
  return Object.freeze({ state: 'verified', certificate });
}

/**
 * Certificate thumbprints for certificate-bound tokens (RFC 8705 section 3.1): the
 * base64url encoding, without padding, of the SHA-256 hash of the DER certificate.
 */
import { createHash, X509Certificate } from 'node:crypto';

/** `x5t#S256` of a certificate given as DER bytes, PEM text or an X509Certificate. */
export function certificateThumbprint(cert: Buffer | Uint8Array | string | X509Certificate): string {
  const der = cert instanceof X509Certificate ? cert.raw : typeof cert === 'string' ? new X509Certificate(cert).raw : cert;
  return createHash('sha256').update(der).digest('base64url');
}

/**
 * Canonical form of a thumbprint as found in a token. RFC 8705 requires base64url without
 * padding, but some issuers (the seed's sample STS among them) emit padded standard base64;
 * both decode to the same 32 bytes, so compare those.
 */
export function normalizeThumbprint(value: string): string | undefined {
  if (!/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(value)) return undefined;
  const bytes = Buffer.from(value.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''), 'base64url');
  return bytes.length === 32 ? bytes.toString('base64url') : undefined;
}

/** True when a `cnf.x5t#S256` value names the certificate with this thumbprint. */
export function thumbprintMatches(claimed: unknown, thumbprint: string): boolean {
  return typeof claimed === 'string' && normalizeThumbprint(claimed) === thumbprint;
}

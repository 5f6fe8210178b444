/**
 * Small JWK helpers shared by the STS signer and the workload issuer: the public
 * half of a private JWK, the RFC 7638 thumbprint used as `kid`, and the JWS
 * algorithm a key implies.
 */
import { createHash } from 'node:crypto';
import type { JWK } from 'jose';

/** Public members per key type (RFC 7518 section 6); everything else is private or metadata. */
const PUBLIC_MEMBERS: Readonly<Record<string, readonly (keyof JWK)[]>> = {
  EC: ['kty', 'crv', 'x', 'y'],
  RSA: ['kty', 'n', 'e'],
  OKP: ['kty', 'crv', 'x'],
};

/** The public key of `jwk` (private or public), without any private member. */
export function publicJwkOf(jwk: JWK): JWK {
  const members = PUBLIC_MEMBERS[jwk.kty ?? ''];
  if (members === undefined) throw new Error(`unsupported JWK key type ${String(jwk.kty)}`);
  const out: JWK = {};
  for (const member of members) {
    const value = jwk[member];
    if (typeof value !== 'string' || value === '') throw new Error(`JWK is missing "${member}"`);
    (out as Record<string, unknown>)[member] = value;
  }
  return out;
}

/**
 * RFC 7638 section 3: SHA-256 over the required members in lexicographic order,
 * base64url. Synchronous (jose's calculateJwkThumbprint is async) so a workload
 * issuer can be created without awaiting.
 */
export function jwkThumbprint(jwk: JWK): string {
  const members = [...(PUBLIC_MEMBERS[jwk.kty ?? ''] ?? [])].sort();
  const canonical = `{${members.map((m) => `${JSON.stringify(m)}:${JSON.stringify(jwk[m])}`).join(',')}}`;
  return createHash('sha256').update(canonical).digest('base64url');
}

/** The JWS algorithm for a key: its own `alg`, else the usual one for its type and curve. */
export function signingAlgorithmFor(jwk: JWK): string {
  if (typeof jwk.alg === 'string' && jwk.alg !== '') return jwk.alg;
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-384') return 'ES384';
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  throw new Error(`cannot infer a signing algorithm for a ${String(jwk.kty)} key`);
}

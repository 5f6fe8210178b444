/**
 * A stand-in for the Kubernetes service-account token issuer: mints
 * projected-token-like JWTs (RS256 by default, like the API server, or ES256; `kid`
 * set) that a dev STS configured with `{ issuer, jwks }` will trust. For the demo
 * and tests only; the key lives in memory and dies with the process.
 */
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, type JSONWebKeySet, type JWK } from 'jose';
import { jwkThumbprint, publicJwkOf } from './keys.js';

export interface WorkloadIssuerOptions {
  /** Default: https://kubernetes.default.svc.cluster.local (the API server's usual issuer). */
  issuer?: string;
  /** Default RS256, as the Kubernetes API server signs. */
  alg?: 'RS256' | 'ES256';
}

export interface MintClaims {
  sub: string;
  aud: string | string[];
  /** Default 3600. Negative mints a token that is already expired (for tests). */
  expiresInSeconds?: number;
  /** Added to the payload (e.g. `kubernetes.io`); cannot override iss, sub, aud, iat, nbf, exp. */
  extra?: Record<string, unknown>;
}

export interface WorkloadIssuer {
  readonly issuer: string;
  /** Public keys, ready for `trustedIssuers: [{ issuer, jwks }]`. */
  readonly jwks: JSONWebKeySet;
  mint(claims: MintClaims): Promise<string>;
}

export const DEFAULT_WORKLOAD_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** Synchronous (keys come from node:crypto) so `jwks` is ready as soon as this returns. */
export function createWorkloadIssuer(opts: WorkloadIssuerOptions = {}): WorkloadIssuer {
  const issuer = opts.issuer ?? DEFAULT_WORKLOAD_ISSUER;
  const alg = opts.alg ?? 'RS256';
  const { privateKey, publicKey } =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicJwk = publicJwkOf(publicKey.export({ format: 'jwk' }) as JWK);
  const kid = jwkThumbprint(publicJwk);
  const jwks: JSONWebKeySet = Object.freeze({ keys: Object.freeze([Object.freeze({ ...publicJwk, kid, alg, use: 'sig' })]) }) as JSONWebKeySet;

  return Object.freeze({
    issuer,
    jwks,
    mint: (claims: MintClaims) => mint(claims, { issuer, alg, kid, privateKey }),
  });
}

async function mint(claims: MintClaims, key: { issuer: string; alg: string; kid: string; privateKey: KeyObject }): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const expiresIn = claims.expiresInSeconds ?? 3600;
  const exp = now + expiresIn;
  // An already-expired token was also issued in the past, so iat/nbf stay before exp.
  const iat = expiresIn > 0 ? now : exp - 600;
  return new SignJWT({
    ...claims.extra,
    iss: key.issuer,
    sub: claims.sub,
    aud: claims.aud,
    iat,
    nbf: iat,
    exp,
    jti: randomUUID(),
  })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .sign(key.privateKey);
}

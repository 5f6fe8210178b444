/**
 * For resource servers: accept a JWT access token only over the TLS connection of
 * the client certificate it is bound to (RFC 8705 section 3). The token is verified
 * first (signature, iss, aud, exp, with jose), then its `cnf.x5t#S256` is compared
 * with the SHA-256 thumbprint of the connection's client certificate. A stolen token
 * is useless without the certificate's private key, which the TLS handshake proved.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { BoundTokenError } from '../errors.js';
import { certificateThumbprint, normalizeThumbprint, thumbprintMatches } from '../tls/thumbprint.js';

/** A JWKS document, its http(s) URL, or a jose key-set function (createRemoteJWKSet / createLocalJWKSet). */
export type BoundTokenKeys = JSONWebKeySet | URL | string | JWTVerifyGetKey;

/**
 * The certificate of the connection the token arrived on: node's
 * `socket.getPeerCertificate()` result (an empty object when there was none), an
 * X509Certificate, DER bytes or PEM text. null/undefined: no client certificate.
 */
export type PeerCertificateInput = PeerCertificate | X509Certificate | Buffer | Uint8Array | string | null | undefined;

export interface VerifyBoundTokenOptions {
  readonly jwks: BoundTokenKeys;
  /** Accepted `iss` value(s). */
  readonly issuer: string | readonly string[];
  /** This service's identifier(s): the token's `aud` must contain one. */
  readonly audience: string | readonly string[];
  /** Allowed clock skew for exp/nbf/iat; default 5. */
  readonly clockToleranceSeconds?: number;
  /**
   * Default true: refuse tokens without `cnf.x5t#S256` (ERR_BOUND_TOKEN_NOT_BOUND).
   * With false, unbound bearer tokens pass; bound ones are still checked.
   */
  readonly requireBinding?: boolean;
  /** Accepted JWS algorithms; default the asymmetric ones (a JWKS cannot hold a shared secret safely). */
  readonly algorithms?: readonly string[];
}

/** The verified claims; `cnf` as RFC 7800 section 3.1 / RFC 8705 section 3.1 shape it. */
export interface BoundTokenPayload extends JWTPayload {
  readonly cnf?: { readonly 'x5t#S256'?: string; readonly [member: string]: unknown };
}

export const DEFAULT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/**
 * Remote key sets by URL, built once: jose's set caches keys, keeps one fetch in
 * flight and cools down, which a per-call createRemoteJWKSet would throw away.
 */
const remoteKeySets = new Map<string, JWTVerifyGetKey>();
const localKeySets = new WeakMap<JSONWebKeySet, JWTVerifyGetKey>();

/**
 * Verifies `token` and its binding to `peerCertificate`; resolves to the claims.
 * Throws BoundTokenError with a stable code; its message never contains the token.
 */
export async function verifyBoundToken(
  token: string,
  peerCertificate: PeerCertificateInput,
  options: VerifyBoundTokenOptions,
): Promise<BoundTokenPayload> {
  const payload = await verifyAccessTokenJwt(token, options);

  const cnf = payload['cnf'];
  if (cnf !== undefined && (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf))) {
    throw new BoundTokenError('ERR_BOUND_TOKEN_INVALID', "the token's cnf claim is not an object (RFC 7800 section 3.1)");
  }
  const claimed = (cnf as Record<string, unknown> | undefined)?.['x5t#S256'];
  if (claimed === undefined) {
    // A cnf with another method (jkt, jwk) is a binding we cannot check here: never downgrade it to a bearer token.
    if (cnf !== undefined || (options.requireBinding ?? true)) {
      throw new BoundTokenError('ERR_BOUND_TOKEN_NOT_BOUND', 'the token is not bound to a client certificate (no cnf.x5t#S256, RFC 8705 section 3.1)');
    }
    return payload as BoundTokenPayload;
  }
  if (typeof claimed !== 'string' || normalizeThumbprint(claimed) === undefined) {
    throw new BoundTokenError('ERR_BOUND_TOKEN_INVALID', "the token's cnf.x5t#S256 is not a SHA-256 thumbprint (RFC 8705 section 3.1)");
  }
  const thumbprint = thumbprintOf(peerCertificate);
  if (thumbprint === undefined) {
    throw new BoundTokenError('ERR_BOUND_TOKEN_NO_CLIENT_CERT', 'the token is certificate-bound but the connection presented no client certificate (RFC 8705 section 3)');
  }
  // thumbprintMatches also accepts the padded standard-base64 form some issuers emit.
  if (!thumbprintMatches(claimed, thumbprint)) {
    throw new BoundTokenError('ERR_BOUND_TOKEN_MISMATCH', `the token is bound to another certificate than this connection's (x5t#S256 ${thumbprint}, RFC 8705 section 3)`);
  }
  return payload as BoundTokenPayload;
}

/** The jose key-set function for `keys`, built once per URL or document (verify-dpop.ts uses it too). */
/**
 * The access token's signature, issuer, audience and expiry (RFC 9068 section 4: `exp` is
 * required; a token without one never expires), whatever binds it. Throws BoundTokenError.
 */
export async function verifyAccessTokenJwt(token: string, options: Pick<VerifyBoundTokenOptions, 'jwks' | 'issuer' | 'audience' | 'algorithms' | 'clockToleranceSeconds'>): Promise<JWTPayload> {
  try {
    const { payload } = await jwtVerify(token, keySetOf(options.jwks), {
      issuer: typeof options.issuer === 'string' ? options.issuer : [...options.issuer],
      audience: typeof options.audience === 'string' ? options.audience : [...options.audience],
      requiredClaims: ['exp'],
      algorithms: [...(options.algorithms ?? DEFAULT_ALGORITHMS)],
      clockTolerance: options.clockToleranceSeconds ?? 5,
    });
    return payload;
  } catch (err) {
    throw invalidToken(err);
  }
}

export function keySetOf(keys: BoundTokenKeys): JWTVerifyGetKey {
  if (typeof keys === 'function') return keys;
  if (typeof keys === 'string' || keys instanceof URL) {
    const url = new URL(keys);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('verifyBoundToken: jwks URL must be http(s)');
    let set = remoteKeySets.get(url.href);
    if (set === undefined) {
      set = createRemoteJWKSet(url);
      remoteKeySets.set(url.href, set);
    }
    return set;
  }
  let set = localKeySets.get(keys);
  if (set === undefined) {
    set = createLocalJWKSet(keys);
    localKeySets.set(keys, set);
  }
  return set;
}

/** RFC 8705 section 3.1 thumbprint of the connection's certificate, or undefined when there is none. */
function thumbprintOf(peer: PeerCertificateInput): string | undefined {
  if (peer === null || peer === undefined) return undefined;
  if (peer instanceof X509Certificate) return certificateThumbprint(peer.raw);
  // DER is hashed as given: bytes that are not this connection's certificate simply will not match.
  if (peer instanceof Uint8Array) return peer.length > 0 ? certificateThumbprint(peer) : undefined;
  if (typeof peer === 'string') {
    if (peer.trim() === '') return undefined;
    try {
      return certificateThumbprint(peer);
    } catch (err) {
      throw new BoundTokenError('ERR_BOUND_TOKEN_NO_CLIENT_CERT', 'the client certificate given to verifyBoundToken is not a PEM certificate', { cause: err });
    }
  }
  // getPeerCertificate() returns {} when the client sent no certificate.
  const raw: unknown = peer.raw;
  return raw instanceof Uint8Array && raw.length > 0 ? certificateThumbprint(raw) : undefined;
}

/** Our words for jose's failure; jose's error stays as `cause` (it holds claims, never the token). */
export function invalidToken(err: unknown): BoundTokenError {
  let what = 'the token could not be verified';
  if (err instanceof errors.JWTExpired) what = 'the token has expired';
  else if (err instanceof errors.JWTClaimValidationFailed) {
    what = err.reason === 'missing' ? `the token has no '${err.claim}' claim` : `the token failed the '${err.claim}' claim check`;
  } else if (err instanceof errors.JWSSignatureVerificationFailed) what = 'the token signature does not verify';
  else if (err instanceof errors.JWKSNoMatchingKey) what = 'no key of the issuer matches the token header';
  else if (err instanceof errors.JOSEAlgNotAllowed) what = 'the token is signed with an algorithm that is not accepted';
  else if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) what = 'the token is not a well-formed JWT';
  else if (err instanceof errors.JWKSTimeout || !(err instanceof errors.JOSEError)) what = "the issuer's keys could not be loaded";
  return new BoundTokenError('ERR_BOUND_TOKEN_INVALID', what, { cause: err });
}

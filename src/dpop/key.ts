/**
 * The DPoP key (RFC 9449): a private key the sidecar holds for the workload, its public JWK
 * (the only part a proof ever carries, section 4.2) and its JWK thumbprint (RFC 7638), which
 * an authorization server stamps into the token as `cnf.jkt` (section 6.1). Generated at
 * start, or read from a PEM (PKCS#8, SEC1 or PKCS#1) or JWK file. The private part never
 * leaves this object: not in logs, not in errors.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, importPKCS8, type JWK } from 'jose';
import { DpopError } from '../errors.js';

/** ES256 by default: small proofs and the fastest signature of the three (issue 16). */
export const DPOP_ALGORITHMS = ['ES256', 'EdDSA', 'RS256'] as const;
export type DpopAlgorithm = (typeof DPOP_ALGORITHMS)[number];

/** jose's CryptoKey type (the tsconfig has no DOM lib to name it). */
type SigningKey = Awaited<ReturnType<typeof importPKCS8>>;

export interface DpopKey {
  readonly algorithm: DpopAlgorithm;
  /**
   * Imported once as a non-extractable WebCrypto key: jose signs with a CryptoKey directly,
   * while a KeyObject is converted on every signature (about twice the per-proof cost).
   */
  readonly signingKey: SigningKey;
  /** Public members only (section 4.2: the `jwk` header MUST NOT contain a private key). */
  readonly publicJwk: Readonly<JWK>;
  /** RFC 7638 SHA-256 thumbprint, base64url: what `cnf.jkt` must equal (RFC 9449 section 6.1). */
  readonly thumbprint: string;
}

const generate = promisify(generateKeyPair);

export async function generateDpopKey(algorithm: DpopAlgorithm = 'ES256'): Promise<DpopKey> {
  const { privateKey } =
    algorithm === 'ES256'
      ? await generate('ec', { namedCurve: 'P-256' })
      : algorithm === 'EdDSA'
        ? await generate('ed25519')
        : await generate('rsa', { modulusLength: 2048 });
  return dpopKeyFrom(privateKey, algorithm);
}

/**
 * A key file's text: PEM, or a private JWK (JSON). The algorithm follows from the key
 * (P-256 -> ES256, Ed25519 -> EdDSA, RSA -> RS256); a JWK's `alg`, when present, must agree.
 * Throws DpopError ERR_DPOP_KEY_INVALID, whose message never quotes the file.
 */
export function parseDpopPrivateKey(text: string): { key: KeyObject; algorithm: DpopAlgorithm } {
  let key: KeyObject;
  let declared: unknown;
  try {
    if (text.trimStart().startsWith('{')) {
      const jwk = JSON.parse(text) as JWK;
      declared = jwk.alg;
      key = createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    } else {
      key = createPrivateKey(text);
    }
  } catch (err) {
    throw new DpopError('ERR_DPOP_KEY_INVALID', 'the DPoP key is neither a private key in PEM nor a private JWK', { cause: err });
  }
  const algorithm = algorithmOf(key);
  if (declared !== undefined && declared !== algorithm) {
    throw new DpopError('ERR_DPOP_KEY_INVALID', `the DPoP key's JWK says alg ${String(declared)}, but the key is for ${algorithm}`);
  }
  return { key, algorithm };
}

export async function dpopKeyFromText(text: string): Promise<DpopKey> {
  const { key, algorithm } = parseDpopPrivateKey(text);
  return dpopKeyFrom(key, algorithm);
}

async function dpopKeyFrom(privateKey: KeyObject, algorithm: DpopAlgorithm): Promise<DpopKey> {
  const exported = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
  // Only the members RFC 7517/7518 define for the public key: nothing a file added (kid, d, use).
  const publicJwk: JWK =
    exported.kty === 'RSA' ? { kty: 'RSA', n: exported.n!, e: exported.e! } : exported.kty === 'EC' ? { kty: 'EC', crv: exported.crv!, x: exported.x!, y: exported.y! } : { kty: 'OKP', crv: exported.crv!, x: exported.x! };
  const thumbprint = await calculateJwkThumbprint(publicJwk, 'sha256');
  const pkcs8 = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const signingKey = await importPKCS8(pkcs8, algorithm, { extractable: false });
  return Object.freeze({ algorithm, signingKey, publicJwk: Object.freeze(publicJwk), thumbprint });
}

function algorithmOf(key: KeyObject): DpopAlgorithm {
  if (key.type !== 'private') throw new DpopError('ERR_DPOP_KEY_INVALID', 'the DPoP key file holds no private key');
  const type = key.asymmetricKeyType;
  if (type === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  if (type === 'ed25519') return 'EdDSA';
  if (type === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) return 'RS256';
  throw new DpopError('ERR_DPOP_KEY_INVALID', 'the DPoP key must be EC P-256 (ES256), Ed25519 (EdDSA) or RSA of 2048 bits or more (RS256)');
}

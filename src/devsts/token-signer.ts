/**
 * The STS's signing key and the one thing done with it: sign issued access tokens
 * as JWTs (RFC 9068). The key is generated fresh at start unless one is supplied,
 * so no private key ever ships with the code.
 */
import { generateKeyPair, exportJWK, importJWK, SignJWT, type JSONWebKeySet, type JWK, type JWTPayload } from 'jose';
import { jwkThumbprint, publicJwkOf, signingAlgorithmFor } from './keys.js';

export interface TokenSigner {
  readonly alg: string;
  readonly kid: string;
  /** What `/.well-known/jwks.json` serves. */
  readonly publicJwks: JSONWebKeySet;
  /** Sign `claims` with `kid` and `typ` in the protected header. */
  sign(claims: JWTPayload, typ: string): Promise<string>;
}

type SigningKey = Awaited<ReturnType<typeof importJWK>>;

export async function createTokenSigner(privateJwk?: JWK): Promise<TokenSigner> {
  let alg: string;
  let key: SigningKey;
  let publicJwk: JWK;
  if (privateJwk === undefined) {
    alg = 'ES256';
    const pair = await generateKeyPair(alg);
    key = pair.privateKey;
    publicJwk = publicJwkOf(await exportJWK(pair.publicKey));
  } else {
    if (typeof privateJwk.d !== 'string') throw new Error('signingKey.privateJwk must be a private key (no "d" member)');
    alg = signingAlgorithmFor(privateJwk);
    key = await importJWK(privateJwk, alg);
    publicJwk = publicJwkOf(privateJwk);
  }
  const kid = typeof privateJwk?.kid === 'string' && privateJwk.kid !== '' ? privateJwk.kid : jwkThumbprint(publicJwk);
  const publicJwks: JSONWebKeySet = deepFreeze({ keys: [{ ...publicJwk, kid, alg, use: 'sig' }] });

  return Object.freeze({
    alg,
    kid,
    publicJwks,
    sign(claims: JWTPayload, typ: string): Promise<string> {
      return new SignJWT(claims).setProtectedHeader({ alg, kid, typ }).sign(key);
    },
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

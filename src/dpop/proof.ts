/**
 * Creating a DPoP proof JWT (RFC 9449 section 4.2): one per request, signed with the key the
 * token is bound to. Per-request cost is one signature (ES256 by default) and one SHA-256
 * for `ath`, memoised for the last token seen.
 */
import { createHash, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { DpopKey } from './key.js';

export interface ProofClaims {
  /** The request's method (`htm`). */
  readonly method: string;
  /** The request's target URI; query and fragment are dropped here (`htu`, section 4.2). */
  readonly url: string;
  /** The access token the request carries, when sent to a resource server (`ath`, section 4.2). */
  readonly accessToken?: string | undefined;
  /** The server's last `DPoP-Nonce` (section 8 and 9). */
  readonly nonce?: string | undefined;
}

/** The `typ` header every proof carries (section 4.2), and a verifier checks. */
export const DPOP_PROOF_TYPE = 'dpop+jwt';

export async function createDpopProof(key: DpopKey, claims: ProofClaims, now: () => number = Date.now): Promise<string> {
  const payload: Record<string, unknown> = {
    jti: randomUUID(),
    htm: claims.method,
    htu: proofTargetUri(claims.url),
    iat: Math.floor(now() / 1000),
  };
  if (claims.accessToken !== undefined) payload['ath'] = accessTokenHash(claims.accessToken);
  if (claims.nonce !== undefined) payload['nonce'] = claims.nonce;
  return new SignJWT(payload).setProtectedHeader({ alg: key.algorithm, typ: DPOP_PROOF_TYPE, jwk: key.publicJwk }).sign(key.signingKey);
}

/**
 * Section 4.2 `htu`: the target URI without query and fragment. Parsed as a URL, so the
 * scheme and host are lower-cased and a default port dropped (the syntax- and scheme-based
 * normalisation section 4.3 item 9 has the server apply before comparing).
 */
export function proofTargetUri(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

let lastToken: string | undefined;
let lastHash = '';

/** Section 4.2 `ath`: base64url of the SHA-256 of the token's ASCII bytes. */
export function accessTokenHash(accessToken: string): string {
  if (accessToken !== lastToken) {
    lastHash = createHash('sha256').update(accessToken, 'ascii').digest('base64url');
    lastToken = accessToken;
  }
  return lastHash;
}

/**
 * The DPoP side of a token request (RFC 9449 section 5): a proof with `htm` POST and `htu`
 * the token endpoint, carrying the nonce the STS last handed out (section 8). A 400
 * `use_dpop_nonce` with a `DPoP-Nonce` header is answered by one retry with that nonce; a
 * `DPoP-Nonce` on any reply updates the nonce for the next request.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { DpopKey } from '../dpop/key.js';
import { NonceStore } from '../dpop/nonces.js';
import { createDpopProof } from '../dpop/proof.js';

export interface StsDpop {
  proof(key: DpopKey): Promise<string>;
  /** Records the reply's nonce; true when the reply asks for the request again with it (section 8). */
  retryWithNonce(status: number, headers: IncomingHttpHeaders, bodyText: string): boolean;
}

export function createStsDpop(tokenEndpoint: string): StsDpop {
  const origin = new URL(tokenEndpoint).origin;
  // One STS: one origin, but the store keeps the validation and the bound in one place.
  const nonces = new NonceStore(1);
  return {
    proof: (key) => createDpopProof(key, { method: 'POST', url: tokenEndpoint, nonce: nonces.get(origin) }),
    retryWithNonce(status, headers, bodyText) {
      const updated = nonces.update(origin, headers['dpop-nonce']);
      return updated && status === 400 && oauthError(bodyText) === 'use_dpop_nonce';
    },
  };
}

function oauthError(bodyText: string): unknown {
  try {
    return (JSON.parse(bodyText) as { error?: unknown }).error;
  } catch {
    return undefined;
  }
}

/**
 * DPoP at the reference STS (RFC 9449 section 5): a token request with a valid proof (htm
 * POST, htu this endpoint, a fresh iat, a jti not seen before) gets a token bound to the
 * proof's key (`cnf.jkt`, `token_type: DPoP`). With `dpopNonce`, the proof must also carry a
 * nonce this STS handed out (section 8): the current one or the one before (a client that
 * learnt it just before a rotation is not refused).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { BoundTokenError } from '../errors.js';
import { OAuthError } from '../oauth/oauth-error.js';
import { DpopReplayCache, verifyDpopProof } from '../resource/dpop-proof.js';

/** How often a demanded nonce changes. */
const NONCE_ROTATION_MS = 60_000;

export interface DevStsDpop {
  /** The proof's key thumbprint when the request carries a valid proof; undefined without one. Throws OAuthError. */
  check(req: IncomingMessage, tokenUrl: string): Promise<string | undefined>;
  /** The nonce to advertise on every answer (section 8), when nonces are demanded. */
  readonly nonce: string | undefined;
}

export function createDevStsDpop(options: { readonly demandNonce: boolean }): DevStsDpop {
  const replay = new DpopReplayCache({ maxEntries: 10_000 });
  let current = fresh();
  let previous: string | undefined;
  let rotatedAt = Date.now();
  const nonce = () => {
    if (Date.now() - rotatedAt >= NONCE_ROTATION_MS) {
      previous = current;
      current = fresh();
      rotatedAt = Date.now();
    }
    return current;
  };
  return {
    get nonce() {
      return options.demandNonce ? nonce() : undefined;
    },
    async check(req, tokenUrl) {
      if (req.headers.dpop === undefined) return undefined;
      const acceptNonce = options.demandNonce ? (n: string | undefined) => n !== undefined && (n === nonce() || n === previous) : undefined;
      try {
        const proof = await verifyDpopProof(req.headers.dpop, { method: req.method ?? 'POST', url: tokenUrl, acceptNonce, replayCache: replay });
        return proof.jkt;
      } catch (err) {
        if (err instanceof BoundTokenError && err.code === 'ERR_BOUND_TOKEN_DPOP_NONCE') {
          throw new OAuthError('use_dpop_nonce', 'this token endpoint requires a nonce in the DPoP proof (RFC 9449 section 8)', { headers: { 'dpop-nonce': nonce() } });
        }
        throw new OAuthError('invalid_dpop_proof', err instanceof Error ? err.message : 'the DPoP proof is invalid', { cause: err });
      }
    },
  };
}

function fresh(): string {
  return randomBytes(16).toString('base64url');
}

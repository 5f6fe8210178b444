/**
 * For resource servers: accept a DPoP-bound access token (RFC 9449 section 7) only with a
 * valid proof of the key it is bound to. The token is verified first (signature, iss, aud,
 * exp, with jose, as verifyBoundToken does), then the request's proof (dpop-proof.ts:
 * signature with its embedded key, typ, htm, htu, iat window, ath, nonce, jti replay), then
 * the token's `cnf.jkt` is compared with the proof key's thumbprint (section 6.1). A token
 * and proof captured on the wire are useless: the proof is for one request, its jti is
 * remembered, and a new proof needs the private key.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { JWTPayload } from 'jose';
import { BoundTokenError } from '../errors.js';
import { verifyDpopProof, type DpopProofCheck } from './dpop-proof.js';
import { verifyAccessTokenJwt, type BoundTokenKeys } from './verify-bound-token.js';

export interface VerifyDpopRequestOptions extends Omit<DpopProofCheck, 'method' | 'url' | 'accessToken'> {
  readonly jwks: BoundTokenKeys;
  readonly issuer: string | readonly string[];
  readonly audience: string | readonly string[];
  readonly clockToleranceSeconds?: number;
  readonly algorithms?: readonly string[];
}

/** The parts of a request the check reads: node's IncomingMessage fits. */
export interface DpopRequestInput {
  readonly method?: string | undefined;
  readonly headers: IncomingHttpHeaders;
}

export interface DpopBoundPayload extends JWTPayload {
  readonly cnf: { readonly jkt: string; readonly [member: string]: unknown };
}

/**
 * `Authorization: DPoP <token>` and its `DPoP` proof; `url` is this request's target URI as
 * the server is addressed (`https://api.example.com/path`). Throws BoundTokenError.
 */
export async function verifyDpopRequest(req: DpopRequestInput, url: string | URL, options: VerifyDpopRequestOptions): Promise<DpopBoundPayload> {
  const match = /^DPoP ([\x21-\x7e]+)$/i.exec(req.headers.authorization ?? '');
  if (!match) throw new BoundTokenError('ERR_BOUND_TOKEN_DPOP_MISMATCH', 'the request carries no DPoP access token (Authorization: DPoP, RFC 9449 section 7.1)');
  const token = match[1]!;
  const payload = await verifyAccessTokenJwt(token, options);
  const cnf = payload['cnf'];
  const jkt = typeof cnf === 'object' && cnf !== null ? (cnf as Record<string, unknown>)['jkt'] : undefined;
  if (typeof jkt !== 'string') throw new BoundTokenError('ERR_BOUND_TOKEN_DPOP_MISMATCH', 'the token is not DPoP-bound (no cnf.jkt, RFC 9449 section 6.1)');
  const proof = await verifyDpopProof(req.headers.dpop, { ...options, method: req.method ?? 'GET', url, accessToken: token });
  if (proof.jkt !== jkt) throw new BoundTokenError('ERR_BOUND_TOKEN_DPOP_MISMATCH', 'the DPoP proof is signed by another key than the token is bound to (cnf.jkt)');
  return payload as DpopBoundPayload;
}

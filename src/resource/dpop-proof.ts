/**
 * For resource servers and the reference STS: checking one DPoP proof (RFC 9449 section 4.3)
 * and remembering its `jti` so it cannot be replayed (section 11.1). The proof's own key
 * (the `jwk` header) verifies its signature; the caller then compares that key's thumbprint
 * with the token's `cnf.jkt` (verify-dpop.ts) or stamps it into the token it issues.
 */
import { calculateJwkThumbprint, EmbeddedJWK, errors, jwtVerify, type JWTPayload } from 'jose';
import { BoundTokenError } from '../errors.js';
import { accessTokenHash, DPOP_PROOF_TYPE, proofTargetUri } from '../dpop/proof.js';

/** Section 4.3 item 5: asymmetric algorithms only; `none` and MACs never. */
const PROOF_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];

/**
 * Seen `jti`s, each kept as long as a proof carrying it could still pass the `iat` window,
 * and at most `maxEntries` (the oldest go first: they are the nearest to expiring anyway).
 */
export class DpopReplayCache {
  readonly #seen = new Map<string, number>();
  readonly #maxEntries: number;

  constructor(options: { maxEntries?: number } = {}) {
    this.#maxEntries = options.maxEntries ?? 100_000;
  }

  /** True when `id` was seen and has not expired; otherwise records it until `expiresAt` (epoch ms). */
  replayed(id: string, expiresAt: number, now = Date.now()): boolean {
    const until = this.#seen.get(id);
    if (until !== undefined && until > now) return true;
    this.#seen.delete(id);
    this.#seen.set(id, expiresAt);
    for (const [oldest, end] of this.#seen) {
      if (this.#seen.size <= this.#maxEntries && end > now) break;
      this.#seen.delete(oldest);
    }
    return false;
  }

  get size(): number {
    return this.#seen.size;
  }
}

export interface DpopProofCheck {
  /** The request's method. */
  readonly method: string;
  /** The request's target URI as this server is addressed (query and fragment are ignored). */
  readonly url: string | URL;
  /** The access token the request carries: the proof's `ath` must be its hash (section 4.3 item 11). */
  readonly accessToken?: string | undefined;
  /** Section 8/9: true when the proof's nonce is one this server accepts now. Absent: no nonce needed. */
  readonly acceptNonce?: ((nonce: string | undefined) => boolean) | undefined;
  /** A proof older than this (by `iat`) is refused; default 60 s. */
  readonly maxAgeSeconds?: number;
  /** Allowed clock skew for `iat` in the future; default 5 s. */
  readonly clockToleranceSeconds?: number;
  /** Where seen `jti`s are kept; without one, replays are not detected. */
  readonly replayCache?: DpopReplayCache | undefined;
  readonly now?: () => number;
}

export interface VerifiedDpopProof {
  /** RFC 7638 thumbprint of the proof's key: what `cnf.jkt` names. */
  readonly jkt: string;
  readonly payload: JWTPayload;
}

const invalid = (what: string, cause?: unknown) => new BoundTokenError('ERR_BOUND_TOKEN_DPOP_PROOF_INVALID', what, cause === undefined ? undefined : { cause });

/** Section 4.3: throws BoundTokenError (ERR_BOUND_TOKEN_DPOP_*), never quoting the proof. */
export async function verifyDpopProof(header: string | string[] | undefined, check: DpopProofCheck): Promise<VerifiedDpopProof> {
  // Items 1 and 2: exactly one DPoP field, a JWT.
  if (header === undefined || Array.isArray(header) || header.includes(',')) throw invalid('the request needs exactly one DPoP proof (RFC 9449 section 4.3)');
  let payload: JWTPayload;
  let jwk: Parameters<typeof calculateJwkThumbprint>[0];
  try {
    // Items 3-7: typ dpop+jwt, an asymmetric alg, the signature by the public key in `jwk`.
    const verified = await jwtVerify(header, EmbeddedJWK, { typ: DPOP_PROOF_TYPE, algorithms: PROOF_ALGORITHMS });
    payload = verified.payload;
    jwk = verified.protectedHeader.jwk!;
  } catch (err) {
    throw invalid(err instanceof errors.JOSEError ? `the DPoP proof does not verify (${err.code})` : 'the DPoP proof does not verify', err);
  }
  const now = (check.now ?? Date.now)();
  const { jti, iat, htm, htu } = payload as JWTPayload & { htm?: unknown; htu?: unknown };
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw invalid('the DPoP proof has no usable jti');
  if (htm !== check.method) throw invalid('the DPoP proof was made for another method (htm)');
  if (typeof htu !== 'string' || !sameTarget(htu, check.url)) throw invalid('the DPoP proof was made for another URL (htu)');
  // Item 10: iat within an acceptable window.
  const maxAge = (check.maxAgeSeconds ?? 60) * 1000;
  const skew = (check.clockToleranceSeconds ?? 5) * 1000;
  if (typeof iat !== 'number' || iat * 1000 > now + skew || iat * 1000 < now - maxAge) throw invalid('the DPoP proof is too old or from the future (iat)');
  if (check.accessToken !== undefined && payload['ath'] !== accessTokenHash(check.accessToken)) {
    throw invalid('the DPoP proof was made for another access token (ath)');
  }
  if (check.acceptNonce && !check.acceptNonce(typeof payload['nonce'] === 'string' ? payload['nonce'] : undefined)) {
    throw new BoundTokenError('ERR_BOUND_TOKEN_DPOP_NONCE', 'the DPoP proof lacks the nonce this server requires (use_dpop_nonce, RFC 9449 section 8)');
  }
  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  // Section 11.1: a jti is accepted once while its proof could pass the iat check.
  if (check.replayCache?.replayed(`${jkt} ${jti}`, iat * 1000 + maxAge + skew, now)) {
    throw new BoundTokenError('ERR_BOUND_TOKEN_DPOP_REPLAYED', 'the DPoP proof was used before (jti, RFC 9449 section 11.1)');
  }
  return { jkt, payload };
}

function sameTarget(htu: string, url: string | URL): boolean {
  try {
    return proofTargetUri(htu) === proofTargetUri(String(url));
  } catch {
    return false;
  }
}

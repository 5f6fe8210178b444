/**
 * The DPoP settings of the config (issue 16, RFC 9449): the top-level `dpop` key (the key the
 * sidecar proves) and each route's `binding` and `dpop`. Kept beside schema.ts, which stays
 * the one place the rest of the config is spelled.
 */
import { z } from 'zod';
import { nonEmpty, seconds } from './fields.js';

/** The algorithms a DPoP key may use; ES256 by default (small, fast proofs). */
const DPOP_ALGORITHMS = ['ES256', 'EdDSA', 'RS256'] as const;

export const dpopSchema = z.strictObject({
  /** The algorithm of the key generated at start when `key` is absent. */
  algorithm: z.enum(DPOP_ALGORITHMS).default('ES256'),
  /** A private key file (PEM or JWK), watched for rotation; absent: a key generated at start. */
  key: nonEmpty.optional(),
  /** Fallback poll for the key file, on top of fs.watch. */
  pollIntervalSeconds: seconds(0.05).default(5),
});

/** Spread into the route schema. */
export const routeBindingFields = {
  /**
   * `auto`: whatever the STS issues (a bearer token, or one bound to `identity`'s certificate,
   * RFC 8705). `dpop`: ask for a DPoP-bound token and prove the key on every request (RFC 9449).
   */
  binding: z.enum(['auto', 'dpop']).default('auto'),
  dpop: z
    .strictObject({
      /** Accept a Bearer reply to a DPoP token request (the STS ignored the proof) instead of failing. */
      allowBearer: z.boolean().default(false),
    })
    .optional(),
};

interface RouteBindingInput {
  readonly upstream?: unknown;
  readonly binding: 'auto' | 'dpop';
  readonly dpop?: unknown;
  readonly authorization: { readonly header: string };
}

/** RFC 9449 section 7.1: a DPoP token travels in `Authorization: DPoP`, nowhere else. */
export function checkRouteBinding(r: RouteBindingInput, ctx: z.RefinementCtx): void {
  if (r.dpop !== undefined && r.binding !== 'dpop') {
    ctx.addIssue({ code: 'custom', path: ['dpop'], message: 'applies only with "binding: dpop"' });
  }
  if (r.binding === 'dpop' && r.upstream === undefined) {
    // Issue 16: a token-only route's tokens go to SDKs, which cannot prove a key kept here.
    ctx.addIssue({ code: 'custom', path: ['binding'], message: '"dpop" needs "upstream": the local endpoints never hand out a DPoP-bound token' });
  }
  if (r.binding === 'dpop' && r.authorization.header !== 'authorization') {
    ctx.addIssue({ code: 'custom', path: ['authorization', 'header'], message: 'must be "authorization" with "binding: dpop" (RFC 9449 section 7.1)' });
  }
}

/**
 * The DPoP settings of the config (issue 16, RFC 9449): the top-level `dpop` key (the key the
 * sidecar proves), each STS profile's and each route's `binding` and `dpop`, and the one rule
 * that says how a route's and its profile's combine. Kept beside schema.ts, which stays
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

/** `auto`: whatever the STS issues. `dpop`: a DPoP-bound token, proved on every request (RFC 9449). */
export const BINDINGS = ['auto', 'dpop'] as const;
export type Binding = (typeof BINDINGS)[number];

/**
 * Spread into the STS profile schema (`sts`, `stsProfiles.NAME`). At the authorization servers
 * that issue DPoP-bound tokens, DPoP is a setting of the client (Keycloak's "DPoP bound access
 * tokens", Okta's "Require DPoP"), and a profile is one client: so a profile may bind all its routes.
 */
export const profileBindingFields = {
  /** `dpop`: every route at this profile is DPoP-bound; `auto`: each route says. */
  binding: z.enum(BINDINGS).default('auto'),
  dpop: z
    .strictObject({
      /** Accept a Bearer reply to a DPoP token request (the STS ignored the proof) instead of failing. */
      allowBearer: z.boolean().default(false),
    })
    .optional(),
};

/** Spread into the route schema. */
export const routeBindingFields = {
  /**
   * `auto`: as the route's STS profile says (its `binding`), which by default is whatever the
   * STS issues (a bearer token, or one bound to `identity`'s certificate, RFC 8705). `dpop`: ask
   * for a DPoP-bound token and prove the key on every request (RFC 9449), whatever the profile says.
   */
  binding: z.enum(BINDINGS).default('auto'),
  dpop: z
    .strictObject({
      /** As `allowBearer` of the profile; absent: the profile's, else false. */
      allowBearer: z.boolean().optional(),
    })
    .optional(),
};

/** The binding keys of a route or a profile, parsed or (in the cross-field checks) not yet. */
export interface BindingSettings {
  readonly binding?: unknown;
  readonly dpop?: { readonly allowBearer?: unknown } | undefined;
}

/** How a route's tokens are bound once its profile is taken into account. */
export interface EffectiveBinding {
  readonly binding: Binding;
  /** With `dpop`: keep a Bearer reply instead of failing (ERR_STS_DPOP_NOT_BOUND). */
  readonly allowBearer: boolean;
  /** With `dpop`: whose `binding: dpop` made it so. */
  readonly boundBy?: 'route' | 'profile';
}

/**
 * The one precedence rule (issue 16): a route is DPoP-bound when it says `binding: dpop` or its
 * profile does; `auto` on a route defers to the profile, and there is no opting out below a DPoP
 * profile (that client gets DPoP-bound tokens only: a route wanting bearer tokens takes another
 * profile). `allowBearer` is the route's when it gives one, else its profile's, else false.
 */
export function resolveBinding(route: BindingSettings, profile: BindingSettings | undefined): EffectiveBinding {
  const boundBy = route.binding === 'dpop' ? 'route' : profile?.binding === 'dpop' ? 'profile' : undefined;
  if (boundBy === undefined) return { binding: 'auto', allowBearer: false };
  const allowBearer = route.dpop?.allowBearer ?? profile?.dpop?.allowBearer;
  return { binding: 'dpop', allowBearer: allowBearer === true, boundBy };
}

/** A route as the cross-field check sees it (possibly partly unparsed). */
type RawRoute = Record<string, unknown>;

/** A route's profile (from its raw `sts`): its name, where it is written (`sts`, `stsProfiles.NAME`) and its settings; undefined when unknown. */
export type ProfileLookup = (sts: unknown) => { readonly name: string; readonly keyPath: string; readonly settings: BindingSettings } | undefined;

/**
 * The DPoP rules spanning a route and its profile, with paths a user can act on: the route's
 * own `binding` when it said `dpop`, else its `sts` (the profile that bound it).
 */
export function checkRouteBindings(routes: ReadonlyArray<RawRoute>, profileOf: ProfileLookup, ctx: z.RefinementCtx): void {
  routes.forEach((r, i) => {
    if (typeof r !== 'object' || r === null) return;
    const profile = profileOf(r['sts']);
    const effective = resolveBinding(r as BindingSettings, profile?.settings);
    const at = (...key: PropertyKey[]) => ['routes', i, ...key];
    if (effective.binding !== 'dpop') {
      if (r['dpop'] !== undefined) ctx.addIssue({ code: 'custom', path: at('dpop'), message: 'applies only with "binding: dpop" (on the route or on its STS profile)' });
      return;
    }
    // Bound by its profile: say which key did it, so the fix (another profile) is plain.
    const profileKey = effective.boundBy === 'profile' ? `${profile?.keyPath}.binding: dpop` : undefined;
    if (r['upstream'] === undefined) {
      // Issue 16: a token-only route's tokens go to SDKs, which cannot prove a key kept here.
      const message = profileKey
        ? `names STS profile "${profile?.name}", which is DPoP-bound (${profileKey}), and the route has no "upstream": the local endpoints never hand out a DPoP-bound token; give the route an upstream or another profile`
        : '"dpop" needs "upstream": the local endpoints never hand out a DPoP-bound token';
      ctx.addIssue({ code: 'custom', path: at(profileKey ? 'sts' : 'binding'), message });
    }
    const authorization = r['authorization'] as { header?: unknown } | undefined;
    const header = typeof authorization?.header === 'string' ? authorization.header.toLowerCase() : 'authorization';
    if (header !== 'authorization') {
      const why = profileKey ? `a DPoP-bound route (${profileKey})` : '"binding: dpop"';
      ctx.addIssue({ code: 'custom', path: at('authorization', 'header'), message: `must be "authorization" with ${why} (RFC 9449 section 7.1)` });
    }
  });
}

/** A profile's `dpop` settings apply only with its `binding: dpop`. */
export function checkProfileBinding(profile: BindingSettings, path: PropertyKey[], ctx: z.RefinementCtx): void {
  if (profile.dpop !== undefined && profile.binding !== 'dpop') {
    ctx.addIssue({ code: 'custom', path: [...path, 'dpop'], message: 'applies only with "binding: dpop"' });
  }
}

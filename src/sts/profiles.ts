/**
 * Issue 13: the STS profiles of a config, by name. The top-level `sts` is the profile
 * `default`; each `stsProfiles` entry is a profile of its own, with its own client auth,
 * trust, encoding and actor token. Pure: opens nothing, so check-config and /status can
 * list profiles the way the running sidecar builds them.
 */
import { resolveBinding, type EffectiveBinding } from '../config/dpop-schema.js';
import { DEFAULT_STS_PROFILE, type Config, type RouteConfig, type StsConfig } from '../config/schema.js';

export interface StsProfileConfigEntry {
  readonly name: string;
  /** Where the profile is written: `sts` or `stsProfiles.NAME`. */
  readonly keyPath: string;
  readonly sts: StsConfig;
}

export function stsProfileConfigs(config: Config): StsProfileConfigEntry[] {
  return [
    { name: DEFAULT_STS_PROFILE, keyPath: 'sts', sts: config.sts },
    ...Object.entries(config.stsProfiles ?? {}).map(([name, profile]) => ({ name, keyPath: `stsProfiles.${name}`, sts: withoutSubjectToken(profile) })),
  ];
}

function withoutSubjectToken(profile: NonNullable<Config['stsProfiles']>[string]): StsConfig {
  const { subjectToken: _subjectToken, ...sts } = profile;
  return sts;
}

/**
 * Issue 16: how `route`'s tokens are bound, its own `binding` and its profile's combined by the
 * one rule (config/dpop-schema.ts `resolveBinding`). Every reader of a route's binding (the
 * cache, the DPoP key, /status, the binding metric) asks here, never `route.binding`.
 */
export function effectiveBinding(config: Config, route: Pick<RouteConfig, 'sts' | 'binding' | 'dpop'>): EffectiveBinding {
  const profile = route.sts === DEFAULT_STS_PROFILE ? config.sts : config.stsProfiles?.[route.sts];
  return resolveBinding(route, profile);
}

/** Whether any route is DPoP-bound, so the DPoP key is needed. */
export function usesDpop(config: Config): boolean {
  return config.routes.some((r) => effectiveBinding(config, r).binding === 'dpop');
}

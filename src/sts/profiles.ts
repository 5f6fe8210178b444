/**
 * Issue 13: the STS profiles of a config, by name. The top-level `sts` is the profile
 * `default`; each `stsProfiles` entry is a profile of its own, with its own client auth,
 * trust, encoding and actor token. Pure: opens nothing, so check-config and /status can
 * list profiles the way the running sidecar builds them.
 */
import { DEFAULT_STS_PROFILE, type Config, type StsConfig } from '../config/schema.js';

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

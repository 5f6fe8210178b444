/**
 * The credentials the config names, opened: the subject tokens (the ambient credentials the
 * sidecar exchanges: the top-level one and, issue 13, those of STS profiles and routes, one
 * source per distinct config) and each STS profile's optional actor token. Each source's
 * secrets are given to the sidecar's redactor, its close to the sidecar's resources, and its
 * rotations and read failures to the log.
 */
import { DEFAULT_STS_PROFILE, type Config } from '../config/schema.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Logger } from '../log/logger.js';
import type { Redactor } from '../log/redact.js';
import { openSecretSource, type SecretSource } from './secret-source.js';
import type { SubjectTokenProvider } from './subject-token.js';
import { createSubjectTokenOpener, routeSubjectTokenConfigs, type OpenedSubjectToken } from './subject-tokens-from-config.js';

export type { OpenedSubjectToken } from './subject-tokens-from-config.js';

export interface ActorTokenSource {
  current(): string;
  readonly type: string;
}

export interface Credentials {
  /** The top-level subject token's source. */
  readonly subjectSource: SecretSource;
  readonly subjectTokens: SubjectTokenProvider;
  /** The default profile's (`sts.actorToken`). */
  readonly actorToken: ActorTokenSource | undefined;
  /** Issue 13: the subject token a route exchanges (its own, its profile's, or the top-level one). */
  forRoute(route: string): OpenedSubjectToken;
  /** Issue 13: an STS profile's actor token, by profile name (`default` for `sts`). */
  actorTokenOf(profile: string): ActorTokenSource | undefined;
  /** Every distinct subject token opened, the top-level one first. */
  readonly subjectTokenSources: readonly OpenedSubjectToken[];
}

export interface CredentialsContext {
  readonly logger: Logger;
  readonly redactor: Redactor;
  readonly resources: Deferrer;
}

/**
 * A rotated credential file that cannot be read keeps the previous value; say so, naming the
 * key and the code (ENOENT, EACCES, ...): an expected failure, one line without a stack.
 */
export function logSourceError(logger: Logger, keyPath: string): (err: unknown) => void {
  return (err) => {
    const code = (err as { code?: unknown } | undefined)?.code;
    logger.warn({ source: keyPath, ...(typeof code === 'string' ? { code } : {}), err }, 'could not re-read a credential file; keeping the previous value');
  };
}

export async function credentialsFromConfig(config: Config, { logger, redactor, resources }: CredentialsContext): Promise<Credentials> {
  const open = createSubjectTokenOpener({ logger, redactor, resources, onSourceError: (keyPath) => logSourceError(logger, keyPath) });
  const top = await open(config.subjectToken, 'subjectToken');
  const byRoute = new Map<string, OpenedSubjectToken>();
  for (const r of routeSubjectTokenConfigs(config)) byRoute.set(r.route, await open(r.config, r.keyPath));

  const actors = new Map<string, ActorTokenSource | undefined>();
  const profiles = [[DEFAULT_STS_PROFILE, 'sts', config.sts] as const, ...Object.entries(config.stsProfiles ?? {}).map(([n, p]) => [n, `stsProfiles.${n}`, p] as const)];
  for (const [name, keyPath, sts] of profiles) {
    const actor = sts.actorToken;
    if (!actor) continue;
    const source = await openSecretSource(actor, { keyPath: `${keyPath}.actorToken`, onError: logSourceError(logger, `${keyPath}.actorToken`) });
    resources.defer(() => source.close());
    redactor.track(source);
    actors.set(name, { current: () => source.current(), type: actor.type });
  }
  return {
    subjectSource: top.source,
    subjectTokens: top.tokens,
    actorToken: actors.get(DEFAULT_STS_PROFILE),
    forRoute: (route) => byRoute.get(route) ?? top,
    actorTokenOf: (profile) => actors.get(profile),
    subjectTokenSources: [...new Set([top, ...byRoute.values()])],
  };
}

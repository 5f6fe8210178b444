/**
 * The credentials the config names, opened: the subject token (the ambient credential the
 * sidecar exchanges) and the optional actor token. Each source's secrets are given to the
 * sidecar's redactor, its close to the sidecar's resources, and its rotations and read
 * failures to the log.
 */
import type { Config } from '../config/schema.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Logger } from '../log/logger.js';
import type { Redactor } from '../log/redact.js';
import { openSecretSource, type SecretSource } from './secret-source.js';
import { createSubjectTokenProvider, type SubjectTokenProvider } from './subject-token.js';

export interface Credentials {
  /** The subject token's source: the pod-token check of the token endpoint compares against it. */
  readonly subjectSource: SecretSource;
  readonly subjectTokens: SubjectTokenProvider;
  readonly actorToken: { current(): string; readonly type: string } | undefined;
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
  const subjectSource = await openSecretSource(config.subjectToken, {
    keyPath: 'subjectToken',
    pollIntervalMs: config.subjectToken.pollIntervalSeconds * 1000,
    onError: logSourceError(logger, 'subjectToken'),
  });
  resources.defer(() => subjectSource.close());
  redactor.track(subjectSource);
  subjectSource.onChange(() => logger.info({ source: subjectSource.description }, 'subject token changed; exchanging ahead for active routes'));

  const actor = config.sts.actorToken;
  let actorToken: Credentials['actorToken'];
  if (actor) {
    const source = await openSecretSource(actor, { keyPath: 'sts.actorToken', onError: logSourceError(logger, 'sts.actorToken') });
    resources.defer(() => source.close());
    redactor.track(source);
    actorToken = { current: () => source.current(), type: actor.type };
  }
  return { subjectSource, subjectTokens: createSubjectTokenProvider(subjectSource, config.subjectToken.type), actorToken };
}

/**
 * The configured workload identity, opened with the sidecar's logging and metrics: a
 * rotation that cannot be taken is logged (naming the key) and counted, one that is
 * taken is logged with public certificate facts only.
 */
import type { Config } from '../config/schema.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Logger } from '../log/logger.js';
import { openWorkloadIdentity, type IdentityGeneration, type WorkloadIdentity } from './identity.js';

/** What the identity reports about its rotations (admin/ counts them; tls/ knows no metrics). */
export interface IdentityObserver {
  rotated(): void;
  reloadFailed(): void;
}

export interface IdentityContext {
  readonly logger: Logger;
  readonly observer: IdentityObserver;
  readonly resources: Deferrer;
}

/** The identity of `config.identity`, or undefined when none is configured. */
export async function identityFromConfig(config: Config, { logger, observer, resources }: IdentityContext): Promise<WorkloadIdentity | undefined> {
  const settings = config.identity;
  if (!settings) return undefined;
  const identity = await openWorkloadIdentity({
    files: settings,
    pollIntervalMs: settings.pollIntervalSeconds * 1000,
    onError(err) {
      observer.reloadFailed();
      logger.error({ key: `identity.${err.key}`, reason: err.message }, 'rotated identity files are not usable; keeping the previous certificate');
    },
  });
  resources.defer(() => identity.close());
  identity.onChange((next, previous) => {
    observer.rotated();
    logger.info({ identity: describeIdentity(next), previousThumbprint: previous.thumbprint }, 'workload identity rotated; new connections present the new certificate');
  });
  return identity;
}

/** Safe to log: public certificate facts only. */
export function describeIdentity(g: IdentityGeneration): Record<string, unknown> {
  return { subject: g.leaf.subject.replace(/\n/g, ', '), thumbprint: g.thumbprint, notAfter: g.notAfter.toISOString(), generation: g.id };
}

/**
 * The configured workload identity, opened with the sidecar's logging and metrics: a
 * rotation that cannot be taken is logged (naming the key) and counted, one that is
 * taken is logged with public certificate facts only.
 */
import type { IdentityObserver } from '../admin/metrics.js';
import type { IdentityConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { openWorkloadIdentity, type IdentityGeneration, type WorkloadIdentity } from './identity.js';

export async function openIdentityFromConfig(settings: IdentityConfig, logger: Logger, observer: IdentityObserver): Promise<WorkloadIdentity> {
  const identity = await openWorkloadIdentity({
    files: settings,
    pollIntervalMs: settings.pollIntervalSeconds * 1000,
    onError(err) {
      observer.reloadFailed();
      logger.error({ key: `identity.${err.key}`, reason: err.message }, 'rotated identity files are not usable; keeping the previous certificate');
    },
  });
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

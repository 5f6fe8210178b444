/**
 * The STS client of `config.sts` (or of one profile, issue 13): its client authentication (secrets watched, keys
 * parsed), its trust anchors read, its connection pool closed with the sidecar.
 */
import type { Config, StsConfig } from '../config/schema.js';
import { readConfigFile } from '../config/files.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Redactor } from '../log/redact.js';
import type { WorkloadIdentity } from '../tls/identity.js';
import { clientAuthFromProfile } from './client-auth-from-config.js';
import { createStsClient, type StsClient } from './client.js';

export interface StsClientContext {
  /** The workload identity: presented for mTLS, and private_key_jwt's key when none is given. */
  readonly identity: WorkloadIdentity | undefined;
  readonly redactor: Redactor;
  readonly resources: Deferrer;
  /** A rotated client secret or key that cannot be read or parsed (the previous one stays). */
  readonly onSourceError: (err: unknown) => void;
}

export function stsClientFromConfig(config: Config, ctx: StsClientContext): Promise<StsClient> {
  return stsClientFromProfile(config.sts, 'sts', ctx);
}

/** One STS profile's client (issue 13); `keyPath` is where the profile is written (`sts`, `stsProfiles.NAME`). */
export async function stsClientFromProfile(sts: StsConfig, keyPath: string, { identity, redactor, resources, onSourceError }: StsClientContext): Promise<StsClient> {
  const clientAuth = await clientAuthFromProfile(sts, keyPath, identity, resources, onSourceError, redactor);
  const client = createStsClient({
    url: sts.url,
    encoding: sts.encoding,
    jsonFieldNames: sts.jsonFieldNames,
    clientAuth,
    tls: {
      ca: sts.ca ? await readConfigFile(sts.ca, `${keyPath}.ca`) : undefined,
      servername: sts.servername,
      clientCertificate: sts.clientCertificate,
    },
    timeoutMs: sts.timeoutSeconds * 1000,
    maxResponseBytes: sts.maxResponseBytes,
    redactor,
  });
  resources.defer(() => client.close());
  return client;
}

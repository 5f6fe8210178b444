/**
 * The STS client of `config.sts`: its client authentication (secrets watched, keys
 * parsed), its trust anchors read, its connection pool closed with the sidecar.
 */
import type { Config } from '../config/schema.js';
import { readConfigFile } from '../config/files.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Redactor } from '../log/redact.js';
import type { WorkloadIdentity } from '../tls/identity.js';
import { clientAuthFromConfig } from './client-auth-from-config.js';
import { createStsClient, type StsClient } from './client.js';

export interface StsClientContext {
  /** The workload identity: presented for mTLS, and private_key_jwt's key when none is given. */
  readonly identity: WorkloadIdentity | undefined;
  readonly redactor: Redactor;
  readonly resources: Deferrer;
  /** A rotated client secret or key that cannot be read or parsed (the previous one stays). */
  readonly onSourceError: (err: unknown) => void;
}

export async function stsClientFromConfig(config: Config, { identity, redactor, resources, onSourceError }: StsClientContext): Promise<StsClient> {
  const sts = config.sts;
  const clientAuth = await clientAuthFromConfig(config, identity, resources, onSourceError, redactor);
  const client = createStsClient({
    url: sts.url,
    encoding: sts.encoding,
    jsonFieldNames: sts.jsonFieldNames,
    clientAuth,
    tls: {
      ca: sts.ca ? await readConfigFile(sts.ca, 'sts.ca') : undefined,
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

/**
 * Issue 13: one STS client per profile of the config (sts/profiles.ts), each with its own
 * client authentication, trust and encoding, all presenting the one workload identity.
 */
import type { Config } from '../config/schema.js';
import type { StsClient } from './client.js';
import { stsClientFromProfile, type StsClientContext } from './client-from-config.js';
import { stsProfileConfigs } from './profiles.js';

export interface StsClients {
  /** The client of a profile the config defines (`default` for the top-level `sts`). */
  client(profile: string): StsClient;
  readonly names: readonly string[];
}

export interface StsClientsContext extends Omit<StsClientContext, 'onSourceError'> {
  /** A rotated client secret or key that cannot be read or parsed, with the key path it was configured at. */
  readonly onSourceError: (keyPath: string) => (err: unknown) => void;
}

export async function stsClientsFromConfig(config: Config, ctx: StsClientsContext): Promise<StsClients> {
  const clients = new Map<string, StsClient>();
  for (const { name, keyPath, sts } of stsProfileConfigs(config)) {
    clients.set(name, await stsClientFromProfile(sts, keyPath, { ...ctx, onSourceError: ctx.onSourceError(`${keyPath}.clientAuth`) }));
  }
  return {
    client(profile) {
      const client = clients.get(profile);
      // The schema's cross-references refuse an unknown profile; reaching here is a bug.
      if (!client) throw new TypeError(`no STS profile "${profile}"`);
      return client;
    },
    names: [...clients.keys()],
  };
}

/**
 * The DPoP key of `config.dpop`, opened only when a route is DPoP-bound (`binding: dpop` on
 * it or on its STS profile): generated at start, or read from `dpop.key` and watched. Its thumbprint is public (it is in every token
 * bound to it) and is logged; the key itself never is.
 */
import type { Config } from '../config/schema.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Logger } from '../log/logger.js';
import { usesDpop } from '../sts/profiles.js';
import { openDpopKeySource, type DpopKeySource } from './key-source.js';

export interface DpopContext {
  readonly logger: Logger;
  readonly resources: Deferrer;
}

export async function dpopKeysFromConfig(config: Config, { logger, resources }: DpopContext): Promise<DpopKeySource | undefined> {
  if (!usesDpop(config)) return undefined;
  const settings = config.dpop;
  const keys = await openDpopKeySource({
    path: settings.key,
    algorithm: settings.algorithm,
    pollIntervalMs: settings.pollIntervalSeconds * 1000,
    keyPath: 'dpop.key',
    onError(err) {
      const code = (err as { code?: unknown }).code;
      logger.error({ key: 'dpop.key', code: typeof code === 'string' ? code : undefined }, 'the DPoP key file is not usable; keeping the previous key');
    },
  });
  resources.defer(() => keys.close());
  const describe = () => ({ algorithm: keys.current().algorithm, jkt: keys.current().thumbprint, source: settings.key ? 'file' : 'generated' });
  logger.info({ dpopKey: describe() }, 'DPoP key ready');
  keys.onChange(() => logger.info({ dpopKey: describe() }, 'DPoP key rotated; routes with binding: dpop exchange again'));
  return keys;
}

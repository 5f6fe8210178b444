/**
 * Files the config names and the sidecar reads once at start-up (CA bundles). A file that
 * cannot be read is a configuration error naming its key, like any other bad setting.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.js';

export async function readConfigFile(path: string, keyPath: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(keyPath, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
  }
}

/**
 * Notices the config file changing (issue 13), however it changes: an editor's rewrite, a
 * `mv` over it, or the kubelet's atomic `..data` symlink swap of a mounted ConfigMap (the
 * path never changes; files/watch.ts watches the directory and polls). A change is the file's
 * *content* changing: a touch, or a swap to identical content, reloads nothing.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { watchFiles } from '../files/watch.js';
import type { Logger } from '../log/logger.js';

export interface ConfigWatchOptions {
  readonly onChange: () => void;
  readonly logger: Logger;
  /** Fallback poll, on top of fs.watch events (default 2 s). */
  readonly pollIntervalMs?: number;
}

export interface ConfigWatch {
  close(): void;
}

export function watchConfigFile(path: string, { onChange, logger, pollIntervalMs = 2000 }: ConfigWatchOptions): ConfigWatch {
  let last: string | undefined;
  let looking = false;
  let closed = false;
  const digest = async () => createHash('sha256').update(await readFile(path)).digest('hex');
  // The content at start is what the running configuration was read from.
  void digest().then(
    (d) => void (last ??= d),
    () => undefined,
  );
  const look = async () => {
    if (looking || closed) return;
    looking = true;
    try {
      const d = await digest();
      if (last !== undefined && d !== last && !closed) {
        last = d;
        logger.info({ file: path }, 'config file changed; reloading');
        onChange();
      }
      last ??= d;
    } catch {
      // Mid-swap or briefly missing: the next event or poll looks again.
    } finally {
      looking = false;
    }
  };
  const watch = watchFiles({
    paths: [path],
    pollIntervalMs,
    onTrigger: () => void look(),
    onWatchError: (err) => logger.debug({ err, file: path }, 'cannot watch the config directory; polling it'),
  });
  return {
    close() {
      closed = true;
      watch.close();
    },
  };
}

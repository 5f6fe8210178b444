/**
 * The one loop that notices files being rewritten: credential files (credentials/) and the
 * workload identity's PEM files (tls/).
 *
 * Kubernetes rotates projected volumes and secrets by writing a new timestamped directory
 * and atomically swapping the `..data` symlink: the file path never changes and a watch on
 * the file itself never fires. So the *directory* is watched (the rename of `..data` lands
 * there), events are debounced (a swap or an editor's write fires several), and `stat()`
 * is also polled (it follows symlinks, so a swap shows as a new inode) because fs.watch
 * misses events on some volume types and is not available on others.
 */
import { watch, type FSWatcher, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Why the owner is asked to look: a directory event (debounced) or the poll timer. */
export type WatchTrigger = 'event' | 'poll';

export interface FileWatchOptions {
  /** Files to watch; their directories are what fs.watch observes. */
  readonly paths: readonly string[];
  readonly pollIntervalMs: number;
  /** Look at the files again; the owner decides whether anything changed. */
  readonly onTrigger: (trigger: WatchTrigger) => void;
  /** fs.watch failed on a directory; the poll still covers it. */
  readonly onWatchError?: (err: unknown) => void;
}

export interface FileWatch {
  close(): void;
}

/** Events of one `..data` swap arrive within a few ms; read once they settle. */
const DEBOUNCE_MS = 25;

export function watchFiles(options: FileWatchOptions): FileWatch {
  let debounce: NodeJS.Timeout | undefined;
  const onEvent = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => options.onTrigger('event'), DEBOUNCE_MS);
    debounce.unref();
  };
  const watchers: FSWatcher[] = [];
  for (const dir of new Set(options.paths.map((p) => dirname(p)))) {
    try {
      const w = watch(dir, { persistent: false }, onEvent);
      w.on('error', (err) => {
        w.close(); // an errored watcher is unusable; the poll still covers this directory
        options.onWatchError?.(err);
      });
      watchers.push(w);
    } catch (err) {
      options.onWatchError?.(err); // e.g. no inotify on this volume: the poll covers it
    }
  }
  const poll = setInterval(() => options.onTrigger('poll'), options.pollIntervalMs);
  poll.unref();
  return {
    close() {
      clearInterval(poll);
      clearTimeout(debounce);
      for (const w of watchers) w.close();
    },
  };
}

/** What identifies one version of a file: a `..data` swap changes the inode, a rewrite mtime or size. */
export function statSignature(info: Stats): string {
  return `${info.dev}:${info.ino}:${info.mtimeMs}:${info.size}`;
}

/** The signature of several files together; rejects when one cannot be stat'ed (e.g. mid-swap). */
export async function filesSignature(paths: readonly string[]): Promise<string> {
  const infos = await Promise.all(paths.map((p) => stat(p)));
  return infos.map(statSignature).join('|');
}

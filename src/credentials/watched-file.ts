/**
 * A small text file kept in memory and re-read when it changes.
 *
 * Kubernetes rotates projected volumes by writing a new timestamped directory and
 * atomically swapping the `..data` symlink; the file path itself never changes and
 * an in-place watch on it never fires. So we watch the *directory* (the rename of
 * `..data` lands there) and also poll `stat()` (which follows symlinks: a swap shows
 * up as a new inode) because fs.watch misses events on some volume types.
 */
import { watch, type FSWatcher, type Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface WatchedFileOptions {
  readonly path: string;
  readonly pollIntervalMs: number;
  /** Turn raw text into a value, or throw to keep the previous value (e.g. a half-written file). */
  readonly parse: (text: string) => string;
  readonly onChange?: (value: string) => void;
  readonly onError?: (err: unknown) => void;
}

export interface WatchedFile {
  readonly path: string;
  current(): string;
  /** Re-read now (used by tests and after a watch event). */
  reload(): Promise<boolean>;
  close(): void;
}

/** What identifies one version of a file: a `..data` swap changes the inode, a rewrite mtime or size. */
export function statSignature(info: Stats): string {
  return `${info.dev}:${info.ino}:${info.mtimeMs}:${info.size}`;
}

export async function openWatchedFile(options: WatchedFileOptions): Promise<WatchedFile> {
  const { path, parse } = options;
  const read = async () => {
    const info = await stat(path);
    const text = await readFile(path, 'utf8');
    return { value: parse(text), signature: statSignature(info) };
  };

  // The first read throws to the caller: a missing credential at start-up is a config error.
  let { value, signature } = await read();
  let reloading: Promise<boolean> | undefined;
  let closed = false;

  const reload = (): Promise<boolean> => {
    reloading ??= (async () => {
      try {
        const next = await read();
        signature = next.signature;
        if (next.value === value) return false;
        value = next.value;
        options.onChange?.(value);
        return true;
      } catch (err) {
        // Keep serving the previous value: mid-swap the path can briefly be missing.
        if (!closed) options.onError?.(err);
        return false;
      } finally {
        reloading = undefined;
      }
    })();
    return reloading;
  };

  const poll = async () => {
    try {
      const info = await stat(path);
      if (statSignature(info) !== signature) await reload();
    } catch (err) {
      if (!closed) options.onError?.(err);
    }
  };

  let debounce: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => void reload(), 25);
      debounce.unref();
    });
    watcher.on('error', (err) => options.onError?.(err));
  } catch (err) {
    options.onError?.(err); // polling still covers us
  }
  const timer = setInterval(() => void poll(), options.pollIntervalMs);
  timer.unref();

  return {
    path,
    current: () => value,
    reload,
    close() {
      closed = true;
      clearInterval(timer);
      clearTimeout(debounce);
      watcher?.close();
    },
  };
}

/**
 * A small text file kept in memory and re-read when it changes (a kubelet `..data`
 * swap included: see files/watch.ts for how a change is noticed).
 */
import { readFile, stat } from 'node:fs/promises';
import { statSignature, watchFiles } from '../files/watch.js';

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

  // A directory event re-reads at once; a poll tick only when stat() shows another version.
  const watcher = watchFiles({
    paths: [path],
    pollIntervalMs: options.pollIntervalMs,
    onTrigger: (trigger) => void (trigger === 'event' ? reload() : poll()),
    ...(options.onError ? { onWatchError: options.onError } : {}),
  });

  return {
    path,
    current: () => value,
    reload,
    close() {
      closed = true;
      watcher.close();
    },
  };
}

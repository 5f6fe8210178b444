/**
 * Where the current DPoP key comes from: generated once at start, or a file watched like the
 * other credentials (credentials/watched-file.ts, a kubelet `..data` swap included). A new
 * key is announced to listeners, so the token cache exchanges again for the routes bound to it
 * (issue 16: "key rotation re-exchanges the routes that use it"). A file that does not parse
 * keeps the previous key in use (a half-written file mid-rotation).
 */
import { openWatchedFile } from '../credentials/watched-file.js';
import { ConfigError } from '../errors.js';
import { dpopKeyFromText, generateDpopKey, parseDpopPrivateKey, type DpopAlgorithm, type DpopKey } from './key.js';

export interface DpopKeySource {
  current(): DpopKey;
  /** Returns a function that removes the listener (a reload keeps the key, not its listeners). */
  onChange(listener: () => void): () => void;
  close(): void;
}

export interface DpopKeySourceOptions {
  /** A PEM or JWK file; absent: a key generated with `algorithm`. */
  readonly path?: string | undefined;
  readonly algorithm: DpopAlgorithm;
  readonly pollIntervalMs: number;
  /** Config key path, for start-up errors (`dpop.key`). */
  readonly keyPath?: string;
  readonly onError?: (err: unknown) => void;
}

export function staticDpopKeySource(key: DpopKey): DpopKeySource {
  return { current: () => key, onChange: () => () => {}, close: () => {} };
}

export async function openDpopKeySource(options: DpopKeySourceOptions): Promise<DpopKeySource> {
  if (!options.path) return staticDpopKeySource(await generateDpopKey(options.algorithm));
  const listeners: Array<() => void> = [];
  let key: DpopKey;
  let generation = 0;
  const file = await openWatchedFile({
    path: options.path,
    pollIntervalMs: options.pollIntervalMs,
    // Synchronous validation: a file that does not parse keeps the previous key.
    parse: (text) => {
      parseDpopPrivateKey(text);
      return text;
    },
    onChange: (text) => {
      const mine = ++generation;
      dpopKeyFromText(text).then(
        (next) => {
          // A later change may have finished first; only the newest wins.
          if (mine !== generation || next.thumbprint === key.thumbprint) return;
          key = next;
          for (const l of listeners) l();
        },
        (err: unknown) => options.onError?.(err),
      );
    },
    ...(options.onError ? { onError: options.onError } : {}),
  }).catch((err: unknown) => {
    throw new ConfigError(options.keyPath ?? 'dpop.key', `cannot read the DPoP key ${options.path}`, { cause: err });
  });
  try {
    key = await dpopKeyFromText(file.current());
  } catch (err) {
    file.close();
    throw new ConfigError(options.keyPath ?? 'dpop.key', 'is not a usable DPoP key', { cause: err });
  }
  return {
    current: () => key,
    onChange(l) {
      listeners.push(l);
      return () => {
        const i = listeners.indexOf(l);
        if (i >= 0) listeners.splice(i, 1);
      };
    },
    close: () => file.close(),
  };
}

/**
 * A secret (subject token, actor token, client secret) from a file, an environment
 * variable or an inline value. `current()` is synchronous and cheap: it is on the
 * request path. Files are watched for rotation (see watched-file.ts).
 */
import { ConfigError } from '../errors.js';
import { openWatchedFile } from './watched-file.js';

export interface SecretSourceSpec {
  readonly file?: string | undefined;
  readonly env?: string | undefined;
  readonly value?: string | undefined;
}

export interface SecretSource {
  /** Where the secret comes from, safe to log (never the secret). */
  readonly description: string;
  current(): string;
  /** Called with no argument: the new value is read through current(). */
  onChange(listener: () => void): void;
  close(): void;
}

export interface SecretSourceOptions {
  /** Config key path, used in start-up errors, e.g. `subjectToken`. */
  readonly keyPath: string;
  readonly pollIntervalMs?: number;
  readonly onError?: (err: unknown) => void;
}

function trimmed(text: string): string {
  const value = text.trim();
  if (!value) throw new Error('file is empty');
  return value;
}

export async function openSecretSource(spec: SecretSourceSpec, options: SecretSourceOptions): Promise<SecretSource> {
  const listeners: Array<() => void> = [];
  if (spec.file !== undefined) {
    const path = spec.file;
    try {
      const file = await openWatchedFile({
        path,
        pollIntervalMs: options.pollIntervalMs ?? 5000,
        parse: trimmed,
        onChange: () => listeners.forEach((l) => l()),
        ...(options.onError ? { onError: options.onError } : {}),
      });
      return {
        description: `file ${path}`,
        current: () => file.current(),
        onChange: (l) => void listeners.push(l),
        close: () => file.close(),
      };
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new ConfigError(`${options.keyPath}.file`, `cannot read ${path}: ${reason}`, { cause: err });
    }
  }
  if (spec.env !== undefined) {
    const raw = process.env[spec.env];
    if (raw === undefined || raw.trim() === '') {
      throw new ConfigError(`${options.keyPath}.env`, `environment variable ${spec.env} is not set or empty`);
    }
    return staticSource(raw.trim(), `env ${spec.env}`);
  }
  if (spec.value !== undefined) return staticSource(spec.value, 'inline value');
  throw new ConfigError(options.keyPath, 'give exactly one of "file", "env" or "value"');
}

function staticSource(value: string, description: string): SecretSource {
  return { description, current: () => value, onChange: () => {}, close: () => {} };
}

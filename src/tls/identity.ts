/**
 * The workload's X.509 identity: certificate chain, private key and trust bundle from PEM
 * files, kept current as cert-manager, SPIFFE helpers or the kubelet rewrite them.
 *
 * Each successful load is an immutable generation. A rotation is taken only when the new
 * files form a usable whole (the key matches the leaf, the leaf is within its validity);
 * a half-written pair (cert updated, key not yet) is retried on the next change or poll,
 * and until then the previous generation stays in use. Files are always re-read
 * together, so two watchers seeing the same `..data` swap cannot mix old and new.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { filesSignature, statSignature, watchFiles } from '../files/watch.js';
import { certificateThumbprint } from './thumbprint.js';

export interface IdentityFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string | undefined;
}

export interface IdentityGeneration {
  /** Increments with every rotation; 1 for the first load. */
  readonly id: number;
  /** RFC 8705 3.1 `x5t#S256` of the leaf certificate. */
  readonly thumbprint: string;
  /** Leaf first, then any intermediates, as PEM (what TLS presents). */
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly caPem: string | undefined;
  readonly leaf: X509Certificate;
  readonly privateKey: KeyObject;
  readonly notAfter: Date;
}

export interface WorkloadIdentity {
  current(): IdentityGeneration;
  /** Called after a new generation became current. */
  /** Returns a function that removes the listener (a reload's retired generation stops listening). */
  onChange(listener: (next: IdentityGeneration, previous: IdentityGeneration) => void): () => void;
  /** Re-read the files now; resolves true when a new generation was taken. */
  reload(): Promise<boolean>;
  close(): void;
}

export interface IdentityOptions {
  readonly files: IdentityFiles;
  readonly pollIntervalMs: number;
  /** Config key prefix for start-up errors (default `identity`). */
  readonly keyPath?: string;
  /** A rotation that could not be taken; the previous generation stays current. */
  readonly onError?: (err: IdentityLoadError) => void;
  readonly now?: () => number;
}

/** Why a set of identity files was not usable; `key` names the config key at fault. */
export class IdentityLoadError extends Error {
  constructor(
    readonly key: 'cert' | 'key' | 'ca',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'IdentityLoadError';
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Parse and check one set of file contents; throws IdentityLoadError naming the bad part. */
export function parseIdentity(texts: { cert: string; key: string; ca?: string | undefined }, now: number, id = 1): IdentityGeneration {
  const blocks = texts.cert.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new IdentityLoadError('cert', 'no PEM certificate found');
  let chain: X509Certificate[];
  try {
    chain = blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    throw new IdentityLoadError('cert', `not a valid certificate: ${(err as Error).message}`, { cause: err });
  }
  const leaf = chain[0]!;
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(texts.key);
  } catch (err) {
    throw new IdentityLoadError('key', `not a valid PEM private key: ${(err as Error).message}`, { cause: err });
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new IdentityLoadError('key', `does not match the certificate (subject "${leaf.subject.replace(/\n/g, ', ')}")`);
  }
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now) throw new IdentityLoadError('cert', `expired at ${notAfter.toISOString()}`);
  if (new Date(leaf.validFrom).getTime() > now + 5 * 60_000) {
    throw new IdentityLoadError('cert', `not valid until ${new Date(leaf.validFrom).toISOString()}`);
  }
  if (texts.ca !== undefined && (texts.ca.match(PEM_CERTIFICATE) ?? []).length === 0) {
    throw new IdentityLoadError('ca', 'no PEM certificate found');
  }
  return {
    id,
    thumbprint: certificateThumbprint(leaf),
    certChainPem: blocks.join('\n') + '\n',
    keyPem: texts.key,
    caPem: texts.ca,
    leaf,
    privateKey,
    notAfter,
  };
}

async function readAll(files: IdentityFiles): Promise<{ cert: string; key: string; ca: string | undefined; signature: string }> {
  const one = async (which: 'cert' | 'key' | 'ca', path: string) => {
    try {
      const info = await stat(path);
      return { text: await readFile(path, 'utf8'), signature: statSignature(info) };
    } catch (err) {
      throw new IdentityLoadError(which, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
    }
  };
  const [cert, key, ca] = await Promise.all([one('cert', files.cert), one('key', files.key), files.ca ? one('ca', files.ca) : undefined]);
  const signature = [cert, key, ...(ca ? [ca] : [])].map((f) => f.signature).join('|');
  return { cert: cert.text, key: key.text, ca: ca?.text, signature };
}

function pathsOf(files: IdentityFiles): string[] {
  return [files.cert, files.key, ...(files.ca ? [files.ca] : [])];
}

async function signatureOf(files: IdentityFiles): Promise<string | undefined> {
  try {
    return await filesSignature(pathsOf(files));
  } catch {
    return undefined; // mid-swap: a path briefly missing; the next tick will see it
  }
}

export async function openWorkloadIdentity(options: IdentityOptions): Promise<WorkloadIdentity> {
  const { files } = options;
  const keyPath = options.keyPath ?? 'identity';
  const now = options.now ?? Date.now;

  let loaded: Awaited<ReturnType<typeof readAll>>;
  let generation: IdentityGeneration;
  try {
    loaded = await readAll(files);
    generation = parseIdentity(loaded, now());
  } catch (err) {
    if (err instanceof IdentityLoadError) throw new ConfigError(`${keyPath}.${err.key}`, err.message, { cause: err });
    throw err;
  }
  let loadedSignature = loaded.signature;
  let failedSignature: string | undefined;
  const listeners: Array<(next: IdentityGeneration, previous: IdentityGeneration) => void> = [];
  let inFlight: Promise<boolean> | undefined;

  async function attempt(): Promise<boolean> {
    const signature = await signatureOf(files);
    if (signature === undefined || signature === loadedSignature) return false;
    try {
      const texts = await readAll(files);
      const next = parseIdentity(texts, now(), generation.id + 1);
      failedSignature = undefined;
      loadedSignature = texts.signature;
      if (next.thumbprint === generation.thumbprint && next.keyPem === generation.keyPem && next.caPem === generation.caPem) {
        return false; // touched, not changed (e.g. a re-sync writing the same bytes)
      }
      const previous = generation;
      generation = next;
      for (const l of listeners) l(next, previous);
      return true;
    } catch (err) {
      // Report each broken state once; keep retrying quietly until the files change again.
      if (signature !== failedSignature) {
        failedSignature = signature;
        const e = err instanceof IdentityLoadError ? err : new IdentityLoadError('cert', String(err), { cause: err });
        options.onError?.(e);
      }
      return false;
    }
  }

  const reload = () => {
    inFlight ??= attempt().finally(() => (inFlight = undefined));
    return inFlight;
  };

  // Events and poll ticks alike: attempt() compares signatures before reading anything.
  const watcher = watchFiles({ paths: pathsOf(files), pollIntervalMs: options.pollIntervalMs, onTrigger: () => void reload() });

  return {
    current: () => generation,
    onChange(l) {
      listeners.push(l);
      return () => {
        const i = listeners.indexOf(l);
        if (i >= 0) listeners.splice(i, 1);
      };
    },
    reload,
    close: () => watcher.close(),
  };
}

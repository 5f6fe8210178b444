/**
 * Writes files the way the kubelet writes projected, Secret and ConfigMap volumes
 * (kubernetes pkg/volume/util/atomic_writer.go), so the demo and the tests exercise
 * the same layout a pod sees:
 *
 *   DIR/..2026_11_22_03_42_00.123456789/sts-token   the payload, in a timestamped directory
 *   DIR/..data -> ..2026_11_22_03_42_00.123456789    swapped atomically on every update
 *   DIR/sts-token -> ..data/sts-token                 the stable path the app reads
 *
 * An update writes a new timestamped directory, points `..data_tmp` at it and renames
 * `..data_tmp` over `..data` (rename(2) is atomic), then removes the old directory. A
 * reader that follows `DIR/sts-token` sees the old or the new file, never a mix.
 */
import { mkdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ProjectedVolume {
  readonly dir: string;
  /** Replaces the whole payload (every file) in one atomic swap. */
  update(files: Readonly<Record<string, string>>): Promise<void>;
}

const DATA = '..data';
const DATA_TMP = '..data_tmp';

let sequence = 0;

/** `..2026_11_22_03_42_00.123456789`-like, unique even within one millisecond. */
function timestampedName(): string {
  const now = new Date();
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const stamp = `${now.getUTCFullYear()}_${pad(now.getUTCMonth() + 1)}_${pad(now.getUTCDate())}_${pad(now.getUTCHours())}_${pad(now.getUTCMinutes())}_${pad(now.getUTCSeconds())}`;
  sequence = (sequence + 1) % 1_000_000;
  return `..${stamp}.${pad(now.getUTCMilliseconds(), 3)}${pad(sequence, 6)}`;
}

/** Payload names are plain file names: the kubelet refuses paths with `..` elements too. */
function checkName(name: string): void {
  if (name === '' || name.startsWith('..') || name.includes('/') || name.includes('\\')) {
    throw new Error(`projected volume file name must be a plain name, got "${name}"`);
  }
}

/** Creates `dir` (if needed) and writes the first payload. */
export async function createProjectedVolume(dir: string, files: Readonly<Record<string, string>>, mode = 0o600): Promise<ProjectedVolume> {
  await mkdir(dir, { recursive: true });
  let linked = new Set<string>();

  async function update(next: Readonly<Record<string, string>>): Promise<void> {
    const names = Object.keys(next);
    names.forEach(checkName);
    const version = timestampedName();
    await mkdir(join(dir, version), { mode: 0o755 });
    for (const name of names) await writeFile(join(dir, version, name), next[name]!, { mode });

    const previous = await readlink(join(dir, DATA)).catch(() => undefined);
    await rm(join(dir, DATA_TMP), { force: true });
    await symlink(version, join(dir, DATA_TMP));
    await rename(join(dir, DATA_TMP), join(dir, DATA));

    // The user-visible links point through ..data, so they never change for a file that stays.
    for (const name of names) {
      if (!linked.has(name)) await symlink(join(DATA, name), join(dir, name));
    }
    for (const name of linked) if (!names.includes(name)) await rm(join(dir, name), { force: true });
    linked = new Set(names);
    if (previous !== undefined && previous !== version) await rm(join(dir, previous), { recursive: true, force: true });
  }

  await update(files);
  return { dir, update };
}

/**
 * Certificates and key files for tests: a CA, workload identities issued by it, and the
 * kubelet's way of laying out (and atomically rotating) a projected or Secret volume.
 */
import { mkdir, rename, rm, symlink, writeFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createCertificateAuthority, type CertificateAuthority, type KeyPairPem } from '../../src/pki/certificates.js';

export interface TestPki {
  readonly ca: CertificateAuthority;
  /** A server certificate for 127.0.0.1 / localhost. */
  readonly server: KeyPairPem;
  client(commonName: string, validitySeconds?: number): KeyPairPem;
}

export function createTestPki(commonName = 'sts-sidecar test CA'): TestPki {
  const ca = createCertificateAuthority({ commonName });
  return {
    ca,
    server: ca.issue({ commonName: 'localhost', subjectAltNames: ['localhost', '127.0.0.1'], usage: 'server' }),
    client: (cn, validitySeconds = 3600) =>
      ca.issue({ commonName: cn, uris: [`spiffe://test.example/${cn}`], usage: 'client', validitySeconds }),
  };
}

/**
 * Writes `files` the way the kubelet does: a timestamped directory, a `..data` symlink to
 * it, and one symlink per file through `..data`. Calling it again rotates atomically
 * (new directory, `..data_tmp` renamed over `..data`), exactly one rename.
 */
export async function kubeletWrite(dir: string, files: Record<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[:.]/g, '_')}.${Math.random().toString(36).slice(2, 8)}`;
  await mkdir(join(dir, stamp));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, stamp, name), content);
  let previous: string | undefined;
  try {
    previous = await readlink(join(dir, '..data'));
  } catch {
    previous = undefined;
  }
  await symlink(stamp, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const name of Object.keys(files)) {
    await symlink(join('..data', name), join(dir, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  if (previous) await rm(join(dir, previous), { recursive: true, force: true });
}

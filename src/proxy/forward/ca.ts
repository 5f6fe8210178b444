/**
 * The interception CA: loaded from `forward.ca` (the production way, e.g. a mounted Secret
 * shared with the app's trust store), or generated at start with its certificate, never its
 * key, written where the app can trust it (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE).
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError } from '../../errors.js';
import type { ForwardConfig } from '../../config/schema.js';
import { certificateAuthorityFrom, createCertificateAuthority, type CertificateAuthority } from '../../pki/certificates.js';

export interface InterceptionCa {
  readonly authority: CertificateAuthority;
  /** Where the CA certificate can be read: forward.ca.cert, or the file a generated one was written to. */
  readonly certPath: string;
  readonly generated: boolean;
}

/** Default `forward.caCertOut`: one fixed name under the OS temp directory. */
export function defaultCaCertPath(): string {
  return join(tmpdir(), 'sts-sidecar-forward-ca.pem');
}

export async function openInterceptionCa(config: ForwardConfig): Promise<InterceptionCa> {
  if (config.ca) {
    const certPem = await readPem(config.ca.cert, 'forward.ca.cert');
    const keyPem = await readPem(config.ca.key, 'forward.ca.key');
    let authority: CertificateAuthority;
    try {
      authority = certificateAuthorityFrom(certPem, keyPem);
      // Sign one throwaway leaf now: a key type the signer cannot use fails here, not per tunnel.
      authority.issue({ commonName: 'start-up check', usage: 'server', validitySeconds: 60 });
    } catch (err) {
      throw new ConfigError('forward.ca', `cannot use it as the interception CA: ${(err as Error).message}`, { cause: err });
    }
    if (Date.parse(authority.certificate.validTo) <= Date.now()) {
      throw new ConfigError('forward.ca.cert', `the CA certificate expired on ${authority.certificate.validTo}`);
    }
    return { authority, certPath: config.ca.cert, generated: false };
  }
  const authority = createCertificateAuthority({ commonName: 'sts-sidecar forward proxy CA', organization: 'sts-sidecar', validitySeconds: 365 * 24 * 3600 });
  const certPath = config.caCertOut ?? defaultCaCertPath();
  try {
    await mkdir(dirname(certPath), { recursive: true });
    // Write then rename, so an app starting meanwhile never reads half a certificate.
    const partial = `${certPath}.${process.pid}.tmp`;
    await writeFile(partial, authority.certPem, { mode: 0o644 });
    await rename(partial, certPath);
  } catch (err) {
    throw new ConfigError('forward.caCertOut', `cannot write the generated CA certificate to ${certPath}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
  }
  return { authority, certPath, generated: true };
}

async function readPem(path: string, keyPath: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(keyPath, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
  }
}

/**
 * The demo's certificates: a demo CA, server certificates for the STS and the upstream, and
 * alice's (the sidecar's identity) and bob's client certificates, written to a directory the
 * demo deletes at exit.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCertificateAuthority, type KeyPairPem } from '../pki/certificates.js';

/** Alice's SPIFFE ID: the workload the demo's sidecar speaks for. */
export const ALICE_URI = 'spiffe://demo.local/ns/demo/sa/orders-client';

export interface DemoPki {
  /** PEM of the demo CA (trusted by everyone here). */
  readonly ca: string;
  readonly sts: KeyPairPem;
  readonly upstream: KeyPairPem;
  readonly alice: KeyPairPem;
  readonly bob: KeyPairPem;
  readonly files: { readonly ca: string; readonly aliceCert: string; readonly aliceKey: string; readonly bobCert: string; readonly bobKey: string };
}


/** A demo CA, server certificates for the STS and the upstream, and alice's and bob's client certificates. */
export async function writeDemoPki(dir: string): Promise<DemoPki> {
  const ca = createCertificateAuthority({ commonName: 'sts-sidecar demo CA', organization: 'sts-sidecar demo' });
  const loopback = ['127.0.0.1', 'localhost'];
  const pki = {
    ca: ca.certPem,
    sts: ca.issue({ commonName: 'sts.demo', subjectAltNames: ['sts.demo', ...loopback], usage: 'server' }),
    upstream: ca.issue({ commonName: 'orders.demo', subjectAltNames: ['orders.demo', ...loopback], usage: 'server' }),
    alice: ca.issue({ commonName: 'alice', uris: [ALICE_URI], usage: 'client' }),
    bob: ca.issue({ commonName: 'bob', uris: ['spiffe://demo.local/ns/demo/sa/bob'], usage: 'client' }),
  };
  const files = {
    ca: join(dir, 'ca.crt'),
    aliceCert: join(dir, 'alice.crt'),
    aliceKey: join(dir, 'alice.key'),
    bobCert: join(dir, 'bob.crt'),
    bobKey: join(dir, 'bob.key'),
  };
  await Promise.all([
    writeFile(files.ca, pki.ca),
    writeFile(files.aliceCert, pki.alice.certPem),
    writeFile(files.aliceKey, pki.alice.keyPem, { mode: 0o600 }),
    writeFile(files.bobCert, pki.bob.certPem),
    writeFile(files.bobKey, pki.bob.keyPem, { mode: 0o600 }),
  ]);
  return { ...pki, files };
}


/**
 * Issue 10 item 17: interception with a CA the sidecar did not make. The CAs here are made
 * by Debian's `openssl` command, as cert-manager or a security team would make them, and
 * configured as `forward.ca`. RFC 5280 4.2.1.1: each leaf's Authority Key Identifier must be
 * the issuer's Subject Key Identifier, or OpenSSL cannot find the issuer. Checked with curl
 * through the forward proxy (the upstream gets the token) and `openssl verify` on the leaf
 * the sidecar actually served.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { certificateAuthorityFrom } from '../src/pki/certificates.js';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { startHarness, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { bearer, makeUpstreamPki, runClient, startRecordingServer, type RecordingServer } from './helpers/forward.js';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command with stdin at EOF (s_client quits after the handshake) and never throws. */
function run(file: string, args: readonly string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { cwd, timeout: 20_000, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end();
  });
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const r = await run('openssl', args, dir);
  assert.equal(r.code, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
}

interface OpensslCa {
  readonly label: string;
  /** forward.ca.cert and forward.ca.key. */
  readonly cert: string;
  readonly key: string;
  /** The trust anchor the app is given (the root above an intermediate). */
  readonly anchor: string;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

/** `openssl req -x509` self-signed CA; `extra` adds or removes extensions. */
async function selfSigned(dir: string, name: string, keyArgs: string[], extra: string[] = []): Promise<OpensslCa> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await openssl(dir, 'req', '-x509', ...keyArgs, '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/O=Security Team/CN=${name}`, ...extra);
  return { label: name, cert, key, anchor: cert };
}

/** An EC intermediate CA signed by an openssl RSA root with `openssl x509 -req`. */
async function intermediate(dir: string, root: OpensslCa): Promise<OpensslCa> {
  const cert = join(dir, 'intermediate.crt');
  const key = join(dir, 'intermediate.key');
  const csr = join(dir, 'intermediate.csr');
  const ext = join(dir, 'intermediate.ext');
  await openssl(dir, 'req', '-new', ...EC, '-nodes', '-keyout', key, '-out', csr, '-subj', '/O=Security Team/CN=openssl intermediate');
  await writeFile(ext, 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  await openssl(dir, 'x509', '-req', '-in', csr, '-CA', root.cert, '-CAkey', root.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext);
  return { label: 'EC intermediate under an openssl RSA root', cert, key, anchor: root.cert };
}

/** The PEM blocks in `text`, in order. */
function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

async function hexExtension(dir: string, certPem: string, extension: string): Promise<string> {
  const file = join(dir, `probe-${extension}.pem`);
  await writeFile(file, certPem);
  const r = await run('openssl', ['x509', '-in', file, '-noout', '-ext', extension], dir);
  assert.equal(r.code, 0, r.stderr);
  // "X509v3 Authority Key Identifier: \n    AB:CD:..." (3.0 may prefix "keyid:")
  return r.stdout.split('\n').slice(1).join('').replace(/keyid:|\s/g, '');
}

describe('issue 10 item 17: interception with CAs made by openssl', () => {
  let dir: TempDir;
  let sts: FakeSts;
  let payments: RecordingServer;
  let upstreamCa: string;
  const cas: OpensslCa[] = [];

  before(async () => {
    dir = await tempDir('sts-sidecar-pki-');
    const upstream = await makeUpstreamPki(dir.path);
    upstreamCa = upstream.caFile;
    sts = await startFakeSts();
    payments = await startRecordingServer({ tls: upstream.server });
    const rsa = await selfSigned(dir.path, 'openssl RSA root', ['-newkey', 'rsa:2048']);
    cas.push(
      rsa,
      await selfSigned(dir.path, 'openssl EC root', EC),
      // An SKI that is not the SHA-1 of the key (RFC 5280 4.2.1.2 allows any unique value).
      await selfSigned(dir.path, 'openssl custom-SKI root', EC, ['-addext', 'subjectKeyIdentifier=0123456789abcdef', '-addext', 'authorityKeyIdentifier=none']),
      await intermediate(dir.path, rsa),
      // Not conforming (4.2.1.2 requires SKI of a CA), yet seen: the fallback identifier must not break it.
      await selfSigned(dir.path, 'openssl root without SKI', EC, ['-addext', 'subjectKeyIdentifier=none', '-addext', 'authorityKeyIdentifier=none']),
    );
  });
  after(async () => {
    await Promise.all([payments?.close(), sts?.close()]);
    await dir?.cleanup();
  });

  async function sidecarWith(ca: OpensslCa): Promise<SidecarHarness> {
    return startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      forward: { ca: { cert: ca.cert, key: ca.key } },
      routes: [{ name: 'payments', host: 'payments.internal', intercept: true, upstream: payments.url, ca: upstreamCa, audience: 'payments' }],
    });
  }

  it('RFC 5280 4.2.1.1: the leaf AKI is the issuer SKI byte for byte; without an SKI, the 4.2.1.2 method (1) SHA-1 of the key', async () => {
    for (const ca of cas) {
      const authority = certificateAuthorityFrom(await readFile(ca.cert, 'utf8'), await readFile(ca.key, 'utf8'));
      const leaf = authority.issue({ commonName: 'payments.internal', subjectAltNames: ['payments.internal'], usage: 'server' });
      const aki = await hexExtension(dir.path, leaf.certPem, 'authorityKeyIdentifier');
      const ski = await hexExtension(dir.path, authority.certPem, 'subjectKeyIdentifier');
      if (ski) {
        assert.equal(aki, ski, ca.label);
      } else {
        // What `openssl x509 -pubkey | openssl ... sha1` over the BIT STRING gives; openssl's own "hash".
        const probe = join(dir.path, 'noski-probe.ext');
        await writeFile(probe, 'subjectKeyIdentifier=hash\n');
        const hashed = join(dir.path, 'noski-hashed.crt');
        await openssl(dir.path, 'x509', '-in', ca.cert, '-signkey', ca.key, '-extfile', probe, '-out', hashed);
        assert.equal(aki, await hexExtension(dir.path, await readFile(hashed, 'utf8'), 'subjectKeyIdentifier'), ca.label);
      }
    }
  });

  it('curl --cacert <openssl CA> -x <proxy> https://payments.internal/ reaches the upstream with the token, and openssl verify accepts the served leaf', async () => {
    for (const ca of cas) {
      const h = await sidecarWith(ca);
      try {
        const r = await runClient('curl', ['-q', '-sS', '--cacert', ca.anchor, '-x', h.sidecar.proxyUrl, '-w', '\n%{http_code}', 'https://payments.internal/pay']);
        assert.equal(r.code, 0, `${ca.label}: curl exit ${r.code}: ${r.stderr}`);
        const [body, status] = r.stdout.split('\n');
        assert.equal(status, '200', ca.label);
        assert.deepEqual(JSON.parse(body!), { url: '/pay', authorization: bearer((await h.sidecar.tokens.getToken('payments')).accessToken), tls: true }, ca.label);

        // The chain the sidecar served, as OpenSSL's own client receives it.
        const proxy = new URL(h.sidecar.proxyUrl).host;
        const shown = await run('openssl', ['s_client', '-proxy', proxy, '-connect', 'payments.internal:443', '-servername', 'payments.internal', '-showcerts'], dir.path);
        const [leaf, ...chain] = pemBlocks(shown.stdout);
        assert.ok(leaf, `${ca.label}: s_client showed no certificate: ${shown.stderr}`);
        const leafFile = join(dir.path, 'served-leaf.pem');
        const chainFile = join(dir.path, 'served-chain.pem');
        await writeFile(leafFile, leaf);
        await writeFile(chainFile, chain.join(''));
        const verified = await run('openssl', ['verify', '-CAfile', ca.anchor, '-untrusted', chainFile, '-purpose', 'sslserver', leafFile], dir.path);
        assert.equal(verified.code, 0, `${ca.label}: ${verified.stdout}${verified.stderr}`);
        assert.match(verified.stdout, /served-leaf\.pem: OK/);
      } finally {
        await h.close();
      }
    }
  });
});

/**
 * The workload identity (identity.cert / identity.key / identity.ca): start-up checks,
 * rotation taken only as a consistent whole, and the RFC 8705 3.1 binding check on issued
 * tokens before anything is injected.
 */
import { strict as assert } from 'node:assert';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { certificateThumbprint } from '../src/tls/thumbprint.js';
import { openWorkloadIdentity, type IdentityLoadError } from '../src/tls/identity.js';
import { ConfigError } from '../src/errors.js';
import { startFakeSts } from './helpers/fake-sts.js';
import { eventually, sleep } from './helpers/eventually.js';
import { closeAfter, parsedLogs, startHarness, startUpstream } from './helpers/harness.js';
import { tempDir } from './helpers/loopback.js';
import { createTestPki, kubeletWrite } from './helpers/pki.js';

const pki = createTestPki();
const alice = pki.client('alice');
const bob = pki.client('bob');

async function files(t: { after(fn: () => unknown): void }, content: Record<string, string>): Promise<string> {
  const dir = await tempDir();
  t.after(() => dir.cleanup());
  for (const [name, text] of Object.entries(content)) await writeFile(join(dir.path, name), text);
  return dir.path;
}

async function startWithIdentity(identity: Record<string, unknown>) {
  const sts = await startFakeSts();
  const upstream = await startUpstream();
  try {
    return await startHarness({
      subjectToken: { value: 'iamtheeggman' },
      sts: { url: sts.tokenUrl },
      identity,
      routes: [{ name: 'api', host: 'api.test', upstream: upstream.url }],
    });
  } finally {
    await sts.close();
    await upstream.close();
  }
}

async function assertStartupError(identity: Record<string, unknown>, path: string, message: RegExp): Promise<void> {
  await assert.rejects(startWithIdentity(identity), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.path, path);
    assert.match(err.message, message);
    return true;
  });
}

test('start-up: a certificate without its key file is an error naming identity.key', async (t) => {
  const dir = await files(t, { 'tls.crt': alice.certPem });
  await assertStartupError({ cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }, 'identity.key', /cannot read .*ENOENT/);
});

test('start-up: a key that does not match the certificate is an error naming identity.key', async (t) => {
  const dir = await files(t, { 'tls.crt': alice.certPem, 'tls.key': bob.keyPem });
  await assertStartupError({ cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }, 'identity.key', /does not match the certificate/);
});

test('start-up: an expired certificate is an error naming identity.cert', async (t) => {
  const expired = pki.ca.issue({
    commonName: 'old',
    usage: 'client',
    notBefore: new Date(Date.now() - 7200_000),
    notAfter: new Date(Date.now() - 3600_000),
  });
  const dir = await files(t, { 'tls.crt': expired.certPem, 'tls.key': expired.keyPem });
  await assertStartupError({ cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }, 'identity.cert', /expired at/);
});

test('start-up: unreadable or non-PEM files are errors naming the key', async (t) => {
  const dir = await files(t, { 'tls.crt': 'not a certificate', 'tls.key': alice.keyPem, 'good.crt': alice.certPem, 'ca.crt': 'nope' });
  await assertStartupError({ cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }, 'identity.cert', /no PEM certificate/);
  await mkdir(join(dir, 'a-directory'));
  await assertStartupError({ cert: join(dir, 'a-directory'), key: join(dir, 'tls.key') }, 'identity.cert', /cannot read .*EISDIR/);
  await assertStartupError({ cert: join(dir, 'good.crt'), key: join(dir, 'tls.key'), ca: join(dir, 'ca.crt') }, 'identity.ca', /no PEM certificate/);
});

test('a chain file (leaf then intermediate) is accepted; the thumbprint is the leaf\'s (RFC 8705 3.1)', async (t) => {
  const dir = await files(t, { 'tls.crt': alice.certPem + pki.ca.certPem, 'tls.key': alice.keyPem });
  const identity = await openWorkloadIdentity({ files: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }, pollIntervalMs: 60_000 });
  t.after(() => identity.close());
  assert.equal(identity.current().thumbprint, certificateThumbprint(alice.certificate));
  assert.equal(identity.current().certChainPem.match(/BEGIN CERTIFICATE/g)?.length, 2);
});

test('rotation: a half-written pair is retried, never loaded; the previous identity stays current', async (t) => {
  const dir = await files(t, { 'tls.crt': alice.certPem, 'tls.key': alice.keyPem });
  const errors: IdentityLoadError[] = [];
  const changes: string[] = [];
  const identity = await openWorkloadIdentity({
    files: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') },
    pollIntervalMs: 60_000,
    onError: (err) => errors.push(err),
  });
  t.after(() => identity.close());
  identity.onChange((next) => changes.push(next.thumbprint));

  await writeFile(join(dir, 'tls.crt'), bob.certPem); // the cert lands first...
  assert.equal(await identity.reload(), false);
  assert.equal(identity.current().thumbprint, certificateThumbprint(alice.certificate));
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.key, 'key');
  assert.equal(await identity.reload(), false, 'retried quietly');
  assert.equal(errors.length, 1, 'the same broken state is reported once');

  await writeFile(join(dir, 'tls.key'), bob.keyPem); // ...then its key
  assert.equal(await identity.reload(), true);
  assert.equal(identity.current().thumbprint, certificateThumbprint(bob.certificate));
  assert.equal(identity.current().id, 2);
  assert.deepEqual(changes, [certificateThumbprint(bob.certificate)]);
});

test('rotation: an expired certificate is refused and the previous identity kept', async (t) => {
  const dir = await files(t, { 'tls.crt': alice.certPem, 'tls.key': alice.keyPem });
  const errors: IdentityLoadError[] = [];
  const identity = await openWorkloadIdentity({
    files: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') },
    pollIntervalMs: 60_000,
    onError: (err) => errors.push(err),
  });
  t.after(() => identity.close());
  const expired = pki.ca.issue({ commonName: 'old', usage: 'client', notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 60_000) });
  await writeFile(join(dir, 'tls.key'), expired.keyPem);
  await writeFile(join(dir, 'tls.crt'), expired.certPem);
  assert.equal(await identity.reload(), false);
  assert.equal(errors.at(-1)?.key, 'cert');
  assert.match(errors.at(-1)!.message, /expired/);
  assert.equal(identity.current().thumbprint, certificateThumbprint(alice.certificate));
});

test('rotation: a kubelet ..data swap of cert and key is picked up by the watch/poll as one change', async (t) => {
  const dir = await tempDir();
  t.after(() => dir.cleanup());
  await kubeletWrite(dir.path, { 'tls.crt': alice.certPem, 'tls.key': alice.keyPem });
  const errors: IdentityLoadError[] = [];
  const identity = await openWorkloadIdentity({
    files: { cert: join(dir.path, 'tls.crt'), key: join(dir.path, 'tls.key') },
    pollIntervalMs: 50,
    onError: (err) => errors.push(err),
  });
  t.after(() => identity.close());
  // The identity's poll timer is unref'd (it must never keep a stopping sidecar alive).
  const keepAlive = setInterval(() => {}, 1000);
  t.after(() => clearInterval(keepAlive));
  const rotated = new Promise<string>((resolve) => identity.onChange((next) => resolve(next.thumbprint)));
  await kubeletWrite(dir.path, { 'tls.crt': bob.certPem, 'tls.key': bob.keyPem });
  assert.equal(await rotated, certificateThumbprint(bob.certificate));
  await sleep(150); // three polls in which nothing may happen: a second rotation would be a torn read

  assert.equal(identity.current().id, 2, 'exactly one rotation');
  assert.deepEqual(errors, [], 'the swap is atomic: cert and key are never read mismatched');
});

/** An unsigned JWT-shaped token: enough for the sidecar, which reads `cnf` but never verifies. */
function jwtWithCnf(n: number, x5t: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'ES256', typ: 'at+jwt' })}.${part({ sub: 'alice', n, exp: Math.floor(Date.now() / 1000) + 3600, cnf: { 'x5t#S256': x5t } })}.c2lnbmF0dXJl`;
}

test('RFC 8705 3.1: a token bound to another certificate is discarded, re-exchanged once, counted, never sent', async (t) => {
  const own = closeAfter(t);
  const dir = await files(t, { 'tls.crt': alice.certPem, 'tls.key': alice.keyPem });
  const sts = own(await startFakeSts());
  const upstream = own(await startUpstream());
  const bobThumbprint = certificateThumbprint(bob.certificate);
  sts.makeToken = (n) => jwtWithCnf(n, bobThumbprint);
  const h = own(
    await startHarness(
      {
        subjectToken: { value: 'iamtheeggman' },
        sts: { url: sts.tokenUrl },
        identity: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') },
        cache: { retryInitialDelaySeconds: 0.05, retryMaxDelaySeconds: 0.1 },
        routes: [{ name: 'api', host: 'api.test', upstream: upstream.url, lazy: true }],
      },
      { waitForTokens: false },
    ),
  );
  const refused = await request(`${h.sidecar.proxyUrl}/x`, { headers: { host: 'api.test' } });
  assert.equal(refused.statusCode, 503);
  const body = (await refused.body.json()) as Record<string, unknown>;
  assert.equal(body['code'], 'ERR_TOKEN_UNAVAILABLE');
  assert.equal(body['cause'], 'ERR_STS_TOKEN_BINDING_MISMATCH');
  assert.equal(sts.issued.length, 2, 'one exchange, one retry');
  assert.equal(upstream.requests.length, 0, 'nothing reached the upstream');
  const metrics = await (await request(`${h.sidecar.adminUrl}/metrics`)).body.text();
  assert.match(metrics, /sts_sidecar_token_binding_mismatches_total\{route="api"\} 2/);
  assert.match(metrics, /sts_sidecar_sts_exchanges_total\{route="api",result="binding_mismatch",binding="certificate"\} 1/);

  // The STS now binds to alice, in the padded standard-base64 spelling the seed's STS uses.
  const padded = Buffer.from(certificateThumbprint(alice.certificate), 'base64url').toString('base64');
  assert.ok(padded.endsWith('=') && /[+/]/.test(padded) === /[-_]/.test(certificateThumbprint(alice.certificate)));
  sts.makeToken = (n) => jwtWithCnf(n, padded);
  await sleep(150); // past the retry backoff (0.05-0.1 s), which nothing outside the cache shows
  const ok = await request(`${h.sidecar.proxyUrl}/x`, { headers: { host: 'api.test' } });
  assert.equal(ok.statusCode, 200);
  await ok.body.dump();
  assert.equal(upstream.requests.length, 1);
  assert.equal(upstream.requests[0]!.headers.authorization, `Bearer ${sts.issued.at(-1)}`);
  for (const bad of sts.issued.slice(0, 2)) {
    assert.ok(!upstream.requests.some((r) => r.headers.authorization?.includes(bad)), 'a mismatched token never left the sidecar');
  }
});

test('config: tls_client_auth and private_key_jwt without a key source need an identity', async () => {
  const { parseConfig } = await import('../src/config/load.js');
  const base = { subjectToken: { value: 'x' }, routes: [{ name: 'a', host: 'a', upstream: 'http://127.0.0.1:1' }] };
  assert.throws(
    () => parseConfig({ ...base, sts: { url: 'https://sts.example/token', clientAuth: { method: 'tls_client_auth', clientId: 'c' } } }),
    (err: Error & { problems?: Array<{ path: string }> }) => err.problems?.some((p) => p.path === 'sts.clientAuth.method') === true,
  );
  assert.throws(
    () => parseConfig({ ...base, sts: { url: 'https://sts.example/token', clientAuth: { method: 'private_key_jwt', clientId: 'c' } } }),
    (err: Error & { problems?: Array<{ path: string }> }) => err.problems?.some((p) => p.path === 'sts.clientAuth.key') === true,
  );
});

test('rotation in a running sidecar: a bad pair is logged and counted, the previous identity keeps serving; the good pair is taken', async (t) => {
  const own = closeAfter(t);
  const dir = await files(t, { 'tls.crt': alice.certPem, 'tls.key': alice.keyPem });
  const sts = own(await startFakeSts());
  const upstream = own(await startUpstream());
  const h = own(
    await startHarness({
      subjectToken: { value: 'iamtheeggman' },
      sts: { url: sts.tokenUrl },
      identity: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key'), pollIntervalSeconds: 0.05 },
      routes: [{ name: 'api', host: 'api.test', upstream: upstream.url }],
    }),
  );
  const get = async () => {
    const res = await request(`${h.sidecar.proxyUrl}/x`, { headers: { host: 'api.test' } });
    await res.body.dump();
    return res.statusCode;
  };
  const metric = async (name: string) => {
    const text = await (await request(`${h.sidecar.adminUrl}/metrics`)).body.text();
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  };
  assert.equal(await get(), 200);
  assert.equal(sts.issued.length, 1);

  await writeFile(join(dir, 'tls.key'), bob.keyPem); // a key that does not match the certificate
  await eventually(async () => (await metric('sts_sidecar_identity_reload_errors_total')) === 1);
  const logged = parsedLogs(h.logs).find((l) => l['msg'] === 'rotated identity files are not usable; keeping the previous certificate');
  assert.equal(logged?.['key'], 'identity.key');
  assert.equal(await get(), 200, 'still serving with the previous identity');
  assert.equal(sts.issued.length, 1, 'no exchange for a broken identity');

  await writeFile(join(dir, 'tls.crt'), bob.certPem); // the pair is whole again: bob
  await eventually(async () => (await metric('sts_sidecar_identity_rotations_total')) === 1);
  await eventually(() => sts.issued.length === 2); // routes in use are exchanged again at once
  assert.equal(await get(), 200);
  assert.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${sts.issued[1]}`, 'the token for the new identity is injected');
  assert.equal(await metric('sts_sidecar_identity_reload_errors_total'), 1);
});

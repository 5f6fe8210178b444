/**
 * `sts-sidecar token ROUTE --config FILE` as a user runs it (issue 13): the built CLI against a
 * real fake STS over mTLS. The claims are printed (decoded without verification, said so), the
 * cnf thumbprint is checked against the identity; the token is printed only with
 * --print-token; a refused exchange exits 1 with its code; bad usage exits 2. The subject token
 * never appears.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { certificateThumbprint } from '../src/tls/thumbprint.js';
import { issueToken, oauthError, startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { createTestPki } from './helpers/pki.js';
import { runCli } from './helpers/cli.js';

const SUBJECT_TOKEN = 'subject-s3cr3t-token-value';

const run = (args: string[]) => runCli(args);

/** An unsigned-looking JWT the STS "issues": bound to the client certificate it saw (RFC 8705 3.1). */
function boundJwt(n: number, clientCertRaw: Buffer | undefined, audience: string | null): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = {
    iss: 'https://sts.test',
    sub: 'spiffe://test.example/alice',
    aud: audience,
    scope: 'orders.read',
    exp: Math.floor(Date.now() / 1000) + 3600,
    ...(clientCertRaw ? { cnf: { 'x5t#S256': certificateThumbprint(clientCertRaw) } } : {}),
  };
  return `${part({ alg: 'ES256', typ: 'at+jwt' })}.${part(claims)}.${Buffer.from(`sig-${n}-${'z'.repeat(20)}`).toString('base64url')}`;
}

describe('sts-sidecar token (issue 13)', () => {
  let dir: TempDir;
  let sts: FakeSts;
  const pki = createTestPki('cli-token test CA');
  const alice = pki.client('alice');
  const config = (name: string) => join(dir.path, name);

  before(async () => {
    dir = await tempDir('sts-sidecar-cli-token-');
    sts = await startFakeSts({
      tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true },
      makeToken: (n, request) => boundJwt(n, request.clientCertificate?.raw, request.form.get('audience')),
    });
    await writeFile(join(dir.path, 'alice.crt'), alice.certPem);
    await writeFile(join(dir.path, 'alice.key'), alice.keyPem);
    await writeFile(join(dir.path, 'ca.crt'), pki.ca.certPem);
    await writeFile(
      config('sidecar.yaml'),
      [
        `subjectToken: { value: ${SUBJECT_TOKEN} }`,
        `sts: { url: "${sts.tokenUrl}" }`,
        `identity: { cert: "${join(dir.path, 'alice.crt')}", key: "${join(dir.path, 'alice.key')}", ca: "${join(dir.path, 'ca.crt')}" }`,
        'routes:',
        '  - { name: orders, host: orders.internal, upstream: "https://orders.internal", audience: https://orders.internal, scope: orders.read }',
        '  - { name: billing, host: billing.internal, upstream: "https://billing.internal", audience: https://billing.internal }',
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    await sts?.close();
    await dir?.cleanup();
  });

  it('prints the claims and the binding, never the token without --print-token', async () => {
    const before = sts.issued.length;
    const { code, stdout, stderr } = await run(['token', 'orders', '--config', config('sidecar.yaml')]);
    assert.equal(code, 0, stderr);
    assert.equal(sts.issued.length, before + 1, 'one exchange');
    assert.equal(sts.received.at(-1)!.form.get('audience'), 'https://orders.internal');
    assert.match(stdout, /decoded WITHOUT verifying the signature/);
    assert.match(stdout, /iss +https:\/\/sts\.test/);
    assert.match(stdout, /sub +spiffe:\/\/test\.example\/alice/);
    assert.match(stdout, /aud +https:\/\/orders\.internal/);
    assert.match(stdout, /scope +orders\.read/);
    assert.match(stdout, /exp +\d{4}-\d\d-\d\dT.*\(in (59m|1h)/);
    assert.ok(stdout.includes(`x5t#S256 ${certificateThumbprint(alice.certPem)} (the identity certificate: bound as expected)`), stdout);
    const output = stdout + stderr;
    const token = sts.issued.at(-1)!;
    for (const part of [token, ...token.split('.')]) assert.ok(!output.includes(part), 'the token (or a part of it) was printed');
    assert.ok(!output.includes(SUBJECT_TOKEN));
  });

  it('--print-token prints it; --json gives the same facts as one object', async () => {
    const printed = await run(['token', 'billing', '--config', config('sidecar.yaml'), '--print-token']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.ok(printed.stdout.includes(sts.issued.at(-1)!));
    const json = await run(['token', 'orders', '-c', config('sidecar.yaml'), '--json']);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as Record<string, any>;
    assert.equal(report['ok'], true);
    assert.equal(report['jwt'].verified, false);
    assert.equal(report['jwt'].claims.sub, 'spiffe://test.example/alice');
    assert.equal(report['boundTo'].matchesIdentity, true);
    assert.equal(report['accessToken'], undefined);
    assert.ok(!json.stdout.includes(sts.issued.at(-1)!));
  });

  it('a refused exchange exits 1 with the error code and the STS error', async () => {
    sts.answer = oauthError('invalid_target', 'audience not allowed for this client');
    try {
      const { code, stdout, stderr } = await run(['token', 'orders', '--config', config('sidecar.yaml')]);
      assert.equal(code, 1);
      assert.match(stderr, /ERR_STS_OAUTH_ERROR/);
      assert.match(stderr, /invalid_target/);
      assert.ok(!(stdout + stderr).includes(SUBJECT_TOKEN));
      const json = await run(['token', 'orders', '--config', config('sidecar.yaml'), '--json']);
      assert.equal(json.code, 1);
      assert.equal((JSON.parse(json.stdout) as { code: string }).code, 'ERR_STS_OAUTH_ERROR');
    } finally {
      sts.answer = issueToken;
    }
  });

  it('bad usage or configuration exits 2', async () => {
    assert.equal((await run(['token', 'nope', '--config', config('sidecar.yaml')])).code, 2, 'unknown route');
    assert.equal((await run(['token', 'orders'])).code, 2, 'no config');
    assert.equal((await run(['token', '--config', config('sidecar.yaml')])).code, 2, 'no route');
    assert.equal((await run(['token', 'orders', '--config', config('missing.yaml')])).code, 2, 'unreadable config');
    await writeFile(config('no-token-file.yaml'), `subjectToken: { file: "${join(dir.path, 'absent')}" }\nsts: { url: "${sts.tokenUrl}" }\nroutes: [{ name: orders, host: orders.internal, upstream: "http://127.0.0.1:9" }]\n`);
    const missing = await run(['token', 'orders', '--config', config('no-token-file.yaml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /subjectToken\.file: cannot read/);
  });
});

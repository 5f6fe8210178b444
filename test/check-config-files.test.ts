/**
 * `check-config --files` (issue 13): the certificates, keys, tokens and secrets a config names
 * opened as the sidecar would, every problem reported in one run at its key path, exit 2, and
 * nothing secret in the output. Files are real: made in the test with src/pki and, for at
 * least one pair, by Debian's `openssl` (skipped with a message when it is missing).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { checkConfigFiles, inspectConfigFiles } from '../src/config/check-files.js';
import { createTestPki } from './helpers/pki.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { runCli } from './helpers/cli.js';

const exec = promisify(execFile);

const OPENSSL = await exec('openssl', ['version']).then(
  () => undefined,
  () => 'openssl is not installed (apt-get install openssl): the openssl-made certificate cases are skipped',
);

function jwt(claims: Record<string, unknown>): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256', kid: 'k1' })}.${part(claims)}.${Buffer.from('signature-bytes-not-checked').toString('base64url')}`;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

const run = (args: string[], env: Record<string, string> = {}) => runCli(args, { env });

/** The base64 body lines of a PEM: any of them in the output would be key material leaking. */
function pemBodyLines(pem: string): string[] {
  return pem.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'));
}

describe('check-config --files (issue 13)', () => {
  let dir: TempDir;
  const pki = createTestPki('check-files test CA');
  const alice = pki.client('alice');
  const bob = pki.client('bob');
  const file = (name: string) => join(dir.path, name);
  const goodToken = jwt({ iss: 'https://kubernetes.default.svc', sub: 'system:serviceaccount:apps:orders', aud: ['sts'], exp: nowSeconds() + 3600 });
  const expiredToken = jwt({ iss: 'https://kubernetes.default.svc', sub: 'system:serviceaccount:apps:orders', exp: nowSeconds() - 600 });
  const clientSecret = 'client-s3cr3t-do-not-print';

  before(async () => {
    dir = await tempDir('sts-sidecar-check-files-');
    await writeFile(file('alice.crt'), alice.certPem);
    await writeFile(file('alice.key'), alice.keyPem);
    await writeFile(file('bob.key'), bob.keyPem);
    await writeFile(file('ca.crt'), pki.ca.certPem);
    await writeFile(file('token'), `${goodToken}\n`);
    await writeFile(file('expired-token'), `${expiredToken}\n`);
    await writeFile(file('opaque-token'), 'not-a-jwt-at-all\n');
    await writeFile(file('client-secret'), clientSecret);
    await writeFile(file('garbage.crt'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
    if (!OPENSSL) {
      // Debian's openssl: an RSA pair for the interception CA and an EC pair for the STS's trust.
      for (const [name, newkey] of [['ossl-rsa', ['rsa:2048']], ['ossl-ec', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']]] as const) {
        await exec('openssl', ['req', '-x509', '-newkey', ...newkey, '-nodes', '-keyout', file(`${name}.key`), '-out', file(`${name}.crt`), '-subj', `/CN=${name}`, '-days', '2']);
      }
    }
  });
  after(async () => {
    await dir?.cleanup();
  });

  function config(parts: { identityKey?: string; subjectToken?: string; stsCa?: string; routeCa?: string; forward?: string; secret?: string; actor?: string }): string {
    return [
      `subjectToken: { file: "${parts.subjectToken ?? file('token')}" }`,
      'sts:',
      '  url: https://sts.example/token',
      `  ca: "${parts.stsCa ?? file('ca.crt')}"`,
      `  clientAuth: { method: client_secret_post, clientId: orders, clientSecret: ${parts.secret ?? `{ file: "${file('client-secret')}" }`} }`,
      ...(parts.actor ? [`  actorToken: ${parts.actor}`] : []),
      `identity: { cert: "${file('alice.crt')}", key: "${parts.identityKey ?? file('alice.key')}", ca: "${file('ca.crt')}" }`,
      ...(parts.forward ? [`forward: { ca: ${parts.forward} }`] : []),
      'routes:',
      `  - { name: orders, host: orders.internal, upstream: "https://orders.internal", ca: "${parts.routeCa ?? file('ca.crt')}" }`,
      '',
    ].join('\n');
  }

  it('a config whose files are all usable exits 0', { skip: OPENSSL }, async () => {
    const path = file('good.yaml');
    await writeFile(path, config({ stsCa: file('ossl-ec.crt'), forward: `{ cert: "${file('ossl-rsa.crt')}", key: "${file('ossl-rsa.key')}" }`, secret: '{ env: CHECK_FILES_SECRET }' }));
    const { code, stdout, stderr } = await run(['check-config', '--files', path], { CHECK_FILES_SECRET: clientSecret });
    assert.equal(code, 0, stderr);
    assert.match(stdout, /valid, and the files it names are usable/);
  });

  it('every problem in one run, each at its key path, exit 2, no secret in the output', { skip: OPENSSL }, async () => {
    const path = file('bad.yaml');
    await writeFile(
      path,
      config({
        identityKey: file('ossl-ec.key'), // openssl's key, alice's certificate
        subjectToken: file('expired-token'),
        stsCa: file('missing-ca.crt'),
        routeCa: file('garbage.crt'),
        forward: `{ cert: "${file('ossl-rsa.crt')}", key: "${file('bob.key')}" }`,
        secret: '{ env: CHECK_FILES_UNSET_VARIABLE }',
        actor: `{ file: "${file('opaque-token')}", type: "urn:ietf:params:oauth:token-type:jwt" }`,
      }),
    );
    const { code, stdout, stderr } = await run(['check-config', '--files', path]);
    assert.equal(code, 2, stderr);
    const paths = [...stderr.matchAll(/^ {2}- (\S+): /gm)].map((m) => m[1]);
    assert.deepEqual(paths.sort(), [
      'forward.ca.key',
      'identity.key',
      'routes[0].ca',
      'sts.actorToken.file',
      'sts.ca',
      'sts.clientAuth.clientSecret.env',
      'subjectToken.file',
    ]);
    assert.match(stderr, /identity\.key: does not match the certificate of identity\.cert/);
    assert.match(stderr, /subjectToken\.file: the JWT expired at/);
    assert.match(stderr, /sts\.ca: cannot read .*missing-ca\.crt: ENOENT/);
    const output = stdout + stderr;
    for (const secret of [expiredToken, ...expiredToken.split('.'), clientSecret, 'not-a-jwt-at-all', ...pemBodyLines(bob.keyPem), ...pemBodyLines(await readFile(file('ossl-ec.key'), 'utf8'))]) {
      assert.ok(!output.includes(secret), `the output shows secret material: ${secret.slice(0, 12)}…`);
    }
  });

  it('a token close to its expiry is a note, not a problem', async () => {
    await writeFile(file('soon-token'), jwt({ sub: 'x', exp: nowSeconds() + 120 }));
    const path = file('soon.yaml');
    await writeFile(path, config({ subjectToken: file('soon-token') }));
    const { code, stdout, stderr } = await run(['check-config', '--files', path]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^note: subjectToken\.file: the JWT expires at .* \(in \d+m/m);
  });

  it('without --files nothing is opened (the files may exist only in the pod)', async () => {
    const path = file('unopened.yaml');
    await writeFile(path, config({ stsCa: file('missing-ca.crt') }));
    const { code } = await run(['check-config', path]);
    assert.equal(code, 0);
  });

  it('as a module: named STS profiles and per-route subject tokens are walked, odd shapes skipped', async () => {
    // The shape another part of issue 13 adds; walked as data, so it needs no schema here.
    const problems = await checkConfigFiles(
      {
        subjectToken: { file: file('token'), type: 'urn:ietf:params:oauth:token-type:jwt' },
        sts: { url: new URL('https://sts.example/token') },
        stsProfiles: {
          google: { ca: file('garbage.crt'), subjectToken: { file: file('expired-token') }, clientAuth: { method: 'private_key_jwt', key: { file: file('alice.crt') } } },
          odd: 5,
        },
        routes: [{ name: 'a', subjectToken: { env: 'CHECK_FILES_UNSET_VARIABLE' } }, 'not a route', null],
        forward: { ca: 'not a mapping' },
      },
      { env: {} },
    );
    assert.deepEqual(problems.map((p) => p.path).sort(), [
      'routes[0].subjectToken.env',
      'stsProfiles.google.ca',
      'stsProfiles.google.clientAuth.key.file',
      'stsProfiles.google.subjectToken.file',
    ]);
  });

  it('an expired identity certificate is a problem; a subject token of another type is not decoded', async () => {
    const old = pki.client('old', 1);
    const now = Date.now() + 3_600_000;
    await writeFile(file('old.crt'), old.certPem);
    await writeFile(file('old.key'), old.keyPem);
    const report = await inspectConfigFiles(
      {
        identity: { cert: file('old.crt'), key: file('old.key') },
        subjectToken: { file: file('opaque-token'), type: 'urn:ietf:params:oauth:token-type:access_token' },
      },
      { now },
    );
    assert.deepEqual(report.problems.map((p) => p.path), ['identity.cert']);
    assert.match(report.problems[0]!.problem, /expired at/);
  });
});

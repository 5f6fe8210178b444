/**
 * The reference STS over mutual TLS against real HTTPS on 127.0.0.1: certificate-bound
 * tokens (RFC 8705 section 3.1), the client-certificate requirement (section 2), and the
 * client authentication methods tls_client_auth (section 2.1) and private_key_jwt
 * (RFC 7523), exercised with undici, the sidecar's own STS client and /usr/bin/curl.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createLocalJWKSet, decodeJwt, exportJWK, jwtVerify, SignJWT, type JSONWebKeySet } from 'jose';
import pino from 'pino';
import type { Agent } from 'undici';
import { createWorkloadIssuer, runDevStsCommand, startDevSts, type DevSts, type DevStsOptions, type WorkloadIssuer } from '../src/devsts/index.js';
import { ConfigError, StsOAuthError } from '../src/errors.js';
import { createStsClient } from '../src/sts/client.js';
import { privateKeyJwt, tlsClientAuth, type ClientAuth } from '../src/sts/client-auth.js';
import { parseIdentity, type IdentityGeneration } from '../src/tls/identity.js';
import { certificateThumbprint, thumbprintMatches } from '../src/tls/thumbprint.js';
import { eventually } from './helpers/eventually.js';
import { tempDir } from './helpers/loopback.js';
import { ALICE_SPIFFE_ID, createTestPki, exchangeForm, postForm, send, tlsAgent, type Reply, type TestPki } from './helpers/mtls.js';

const execFileAsync = promisify(execFile);
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

const pki: TestPki = createTestPki();
/** The sidecar's view of a workload identity, as src/tls/identity.ts loads it from files. */
const identityOf = (who: 'alice' | 'bob'): IdentityGeneration => parseIdentity({ cert: pki[who].certPem, key: pki[who].keyPem, ca: pki.ca.certPem }, Date.now());
const workload: WorkloadIssuer = createWorkloadIssuer({ issuer: 'https://kubernetes.default.svc' });
/** Agents by name, closed at the end. */
const agents: Agent[] = [];
function agent(client?: keyof Pick<TestPki, 'alice' | 'bob' | 'mallory'>): Agent {
  const a = tlsAgent(pki.ca.certPem, client ? pki[client] : undefined);
  agents.push(a);
  return a;
}
after(() => Promise.all(agents.map((a) => a.close())));

function mtlsSts(extra: DevStsOptions = {}): Promise<DevSts> {
  return startDevSts({
    trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }],
    ...extra,
    tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, ...extra.tls },
  });
}

async function subjectToken(sub = 'system:serviceaccount:apps:alice'): Promise<string> {
  return workload.mint({ sub, aud: 'sts', expiresInSeconds: 600 });
}

function assertInvalidClient(reply: Reply): string {
  assert.equal(reply.status, 401, reply.text);
  assert.equal(reply.body['error'], 'invalid_client', reply.text);
  assert.equal(reply.headers['www-authenticate'], 'Basic realm="dev-sts"');
  assert.equal(reply.headers['cache-control'], 'no-store');
  return reply.body['error_description'] as string;
}

function cnfOf(reply: Reply): unknown {
  assert.equal(reply.status, 200, reply.text);
  return (decodeJwt(reply.body['access_token'] as string)['cnf'] as Record<string, unknown> | undefined)?.['x5t#S256'];
}

describe('certificate-bound tokens from the mTLS listener (RFC 8705 3.1)', () => {
  let sts: DevSts;
  before(async () => {
    sts = await mtlsSts();
  });
  after(() => sts.close());

  test('RFC 8705 3.1: a verified client certificate binds the JWT: cnf.x5t#S256 = base64url(SHA-256(DER)), unpadded', async () => {
    assert.match(sts.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const reply = await postForm(sts.tokenUrl, agent('alice'), exchangeForm(await subjectToken()));
    const cnf = cnfOf(reply);
    assert.equal(cnf, certificateThumbprint(pki.alice.certPem));
    assert.match(cnf as string, /^[A-Za-z0-9_-]{43}$/, 'base64url without padding, no line breaks');
    // And the issued token verifies against the JWKS the HTTPS listener publishes.
    const jwks = await send(sts.jwksUrl, agent());
    const { payload } = await jwtVerify(reply.body['access_token'] as string, createLocalJWKSet(jwks.body as unknown as JSONWebKeySet), { issuer: sts.issuer });
    assert.equal(payload.sub, 'system:serviceaccount:apps:alice');
  });

  test("RFC 8705 3: alice's and bob's tokens are bound to their own certificates", async () => {
    const alice = cnfOf(await postForm(sts.tokenUrl, agent('alice'), exchangeForm(await subjectToken())));
    const bob = cnfOf(await postForm(sts.tokenUrl, agent('bob'), exchangeForm(await subjectToken('system:serviceaccount:apps:bob'))));
    assert.equal(bob, certificateThumbprint(pki.bob.certPem));
    assert.notEqual(alice, bob);
  });

  test('RFC 8705 3: without a client certificate (not required) the JWT is issued unbound', async () => {
    const reply = await postForm(sts.tokenUrl, agent(), exchangeForm(await subjectToken()));
    assert.equal(reply.status, 200, reply.text);
    assert.equal(decodeJwt(reply.body['access_token'] as string)['cnf'], undefined);
  });

  test('RFC 8705 2: a certificate from an untrusted CA is refused (401 invalid_client), never bound', async () => {
    const before = sts.stats.exchangesIssued;
    const description = assertInvalidClient(await postForm(sts.tokenUrl, agent('mallory'), exchangeForm(await subjectToken())));
    assert.match(description, /does not verify against the trusted CA \([A-Z_]+\)/);
    assert.equal(sts.stats.exchangesIssued, before, 'nothing was issued');
  });

  test('the seed static rule over mTLS still answers the opaque token (no JWT to carry cnf)', async () => {
    const reply = await postForm(sts.tokenUrl, agent('alice'), [
      ['grant_type', 'urn:ietf:params:oauth:grant-type:token-exchange'],
      ['subject_token', 'iamtheeggman'],
      ['subject_token_type', 'urn:ietf:params:oauth:token-type:access_token'],
    ]);
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.body['access_token'], 'iamthewalrus');
  });
});

describe("cnfEncoding 'base64-padded': the seed STS's non-conformant form", () => {
  test('RFC 8705 3.1 vs the seed: padded standard base64 of the same 32 bytes, still recognised by thumbprintMatches', async (t) => {
    const sts = await mtlsSts({ cnfEncoding: 'base64-padded' });
    t.after(() => sts.close());
    const cnf = cnfOf(await postForm(sts.tokenUrl, agent('alice'), exchangeForm(await subjectToken())));
    const thumbprint = certificateThumbprint(pki.alice.certPem);
    assert.equal(cnf, Buffer.from(thumbprint, 'base64url').toString('base64'));
    assert.match(cnf as string, /^[A-Za-z0-9+/]{43}=$/);
    assert.ok(thumbprintMatches(cnf, thumbprint));
    assert.ok(!thumbprintMatches(cnf, certificateThumbprint(pki.bob.certPem)));
  });
});

describe('requireClientCert (RFC 8705 2)', () => {
  let sts: DevSts;
  before(async () => {
    sts = await mtlsSts({ tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, requireClientCert: true } });
  });
  after(() => sts.close());

  test('RFC 8705 2: no client certificate -> 401 invalid_client; with one -> 200 and bound', async () => {
    const description = assertInvalidClient(await postForm(sts.tokenUrl, agent(), exchangeForm(await subjectToken())));
    assert.match(description, /client certificate is required/);
    assert.equal(cnfOf(await postForm(sts.tokenUrl, agent('alice'), exchangeForm(await subjectToken()))), certificateThumbprint(pki.alice.certPem));
  });

  test('the JWKS and health endpoints stay readable without a client certificate', async () => {
    assert.equal((await send(sts.jwksUrl, agent())).status, 200);
    assert.equal((await send(`${sts.url}/healthz`, agent())).status, 200);
  });

  test('RFC 8705 2: the seed curl call (--cert/--key/--cacert, JSON body from a file) gets a bound JWT; without --cert 401', async (t) => {
    const dir = await tempDir('devsts-mtls-curl-');
    t.after(() => dir.cleanup());
    const files = {
      cert: join(dir.path, 'alice.crt'),
      key: join(dir.path, 'alice.key'),
      ca: join(dir.path, 'tls-ca.crt'),
      req: join(dir.path, 'sts_req_alice.json'),
    };
    await writeFile(files.cert, pki.alice.certPem);
    await writeFile(files.key, pki.alice.keyPem, { mode: 0o600 });
    await writeFile(files.ca, pki.ca.certPem);
    // grpc-go's snake_case JSON, as the seed's curl/sts_req_alice.json.
    await writeFile(
      files.req,
      JSON.stringify({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: await subjectToken(),
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        audience: 'https://server.domain.com:8443',
        resource: '',
        scope: '',
        requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      }),
    );
    const curl = (extra: string[]) =>
      execFileAsync('curl', ['-s', '-X', 'POST', '-H', 'Content-Type: application/json', '-d', `@${files.req}`, '--cacert', files.ca, ...extra, sts.tokenUrl]);
    const { stdout } = await curl(['--cert', files.cert, '--key', files.key]);
    const body = JSON.parse(stdout) as Record<string, unknown>;
    const claims = decodeJwt(body['access_token'] as string);
    assert.deepEqual(claims['cnf'], { 'x5t#S256': certificateThumbprint(pki.alice.certPem) });
    assert.equal(claims.aud, 'https://server.domain.com:8443');

    const refused = await curl(['-w', '\\n%{http_code}']);
    const [json, status] = refused.stdout.split('\n');
    assert.equal(status, '401');
    assert.equal((JSON.parse(json ?? '{}') as Record<string, unknown>)['error'], 'invalid_client');
  });
});

describe('tls_client_auth (RFC 8705 2.1)', () => {
  let sts: DevSts;
  before(async () => {
    sts = await mtlsSts({
      clients: [
        { clientId: 'by-dn', tlsClientAuthSubjectDn: 'CN=alice' },
        { clientId: 'by-uri', tlsClientAuthSanUri: ALICE_SPIFFE_ID },
        { clientId: 'by-dns', tlsClientAuthSanDns: 'ALICE.apps.demo.test' },
        { clientId: 'by-ip', tlsClientAuthSanIp: '127.0.0.1' },
        { clientId: 'secret-client', clientSecret: 's3cret' },
      ],
    });
  });
  after(() => sts.close());

  test("RFC 8705 2.1.2: client_id + alice's certificate authenticates by subject DN, SAN URI and SAN DNS (case-insensitive)", async () => {
    for (const clientId of ['by-dn', 'by-uri', 'by-dns']) {
      const reply = await postForm(sts.tokenUrl, agent('alice'), exchangeForm(await subjectToken(), [['client_id', clientId]]));
      assert.equal(reply.status, 200, `${clientId}: ${reply.text}`);
      const claims = decodeJwt(reply.body['access_token'] as string);
      assert.equal(claims['client_id'], clientId);
      assert.deepEqual(claims['cnf'], { 'x5t#S256': certificateThumbprint(pki.alice.certPem) });
    }
  });

  test("RFC 8705 2: bob's certificate for alice's client_id -> 401 invalid_client", async () => {
    for (const clientId of ['by-dn', 'by-uri', 'by-dns']) {
      const description = assertInvalidClient(await postForm(sts.tokenUrl, agent('bob'), exchangeForm(await subjectToken(), [['client_id', clientId]])));
      assert.match(description, /does not carry the registered tls_client_auth_/);
    }
  });

  test('RFC 8705 2.1.2: a SAN IP registration that the certificate lacks -> invalid_client', async () => {
    assertInvalidClient(await postForm(sts.tokenUrl, agent('alice'), exchangeForm(await subjectToken(), [['client_id', 'by-ip']])));
  });

  test('RFC 8705 2: no certificate, or a same-named certificate from an untrusted CA -> invalid_client', async () => {
    assertInvalidClient(await postForm(sts.tokenUrl, agent(), exchangeForm(await subjectToken(), [['client_id', 'by-uri']])));
    assertInvalidClient(await postForm(sts.tokenUrl, agent('mallory'), exchangeForm(await subjectToken(), [['client_id', 'by-uri']])));
  });

  test('RFC 6749 2.3: a secret client cannot authenticate with its certificate, and client_secret_post still works (and binds)', async () => {
    assertInvalidClient(await postForm(sts.tokenUrl, agent('alice'), exchangeForm(await subjectToken(), [['client_id', 'secret-client']])));
    const reply = await postForm(sts.tokenUrl, agent('alice'), exchangeForm(await subjectToken(), [['client_id', 'secret-client'], ['client_secret', 's3cret']]));
    assert.equal(cnfOf(reply), certificateThumbprint(pki.alice.certPem));
    assert.equal(decodeJwt(reply.body['access_token'] as string)['client_id'], 'secret-client');
  });

  test("the sidecar's tlsClientAuth() over its mTLS transport is accepted for alice and refused for bob", async (t) => {
    // One STS client per workload, as each sidecar has its own identity.
    const exchange = async (who: 'alice' | 'bob') => {
      const client = createStsClient({ url: new URL(sts.tokenUrl), encoding: 'form', clientAuth: tlsClientAuth('by-uri'), timeoutMs: 5000, maxResponseBytes: 65536 });
      t.after(() => client.close());
      return client.exchange({ subjectToken: 'iamtheeggman', subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token' }, identityOf(who));
    };
    assert.equal((await exchange('alice')).accessToken, 'iamthewalrus');
    await assert.rejects(exchange('bob'), (err: unknown) => err instanceof StsOAuthError && err.error === 'invalid_client' && err.stsStatus === 401);
  });
});

describe('private_key_jwt (RFC 7523 2.2 and 3)', () => {
  let sts: DevSts;
  const clientKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  before(async () => {
    const jwk = await exportJWK(clientKey);
    delete jwk.d;
    sts = await mtlsSts({ clients: [{ clientId: 'jwt-client', jwks: { keys: [{ ...jwk, kid: 'k1', alg: 'ES256' }] } }] });
  });
  after(() => sts.close());

  function sidecarAuth(overrides: { key?: KeyObject; audience?: string; lifetimeSeconds?: number } = {}): ClientAuth {
    return privateKeyJwt({
      clientId: 'jwt-client',
      key: () => overrides.key ?? clientKey,
      algorithm: 'ES256',
      keyId: 'k1',
      audience: overrides.audience ?? sts.tokenUrl,
      lifetimeSeconds: overrides.lifetimeSeconds ?? 60,
    });
  }

  async function exchangeWith(clientAuth: ClientAuth): Promise<string> {
    const client = createStsClient({ url: new URL(sts.tokenUrl), encoding: 'form', clientAuth, timeoutMs: 5000, maxResponseBytes: 65536 });
    try {
      const params = { subjectToken: await subjectToken(), subjectTokenType: 'urn:ietf:params:oauth:token-type:jwt' };
      return (await client.exchange(params, identityOf('alice'))).accessToken;
    } finally {
      await client.close();
    }
  }

  /** An assertion built by hand, for the cases the sidecar would never produce. */
  async function assertion(claims: { aud?: string; exp?: number; jti?: string | undefined; sub?: string }, key: KeyObject = clientKey): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('jwt-client')
      .setSubject(claims.sub ?? 'jwt-client')
      .setAudience(claims.aud ?? sts.tokenUrl)
      .setIssuedAt(now - 10)
      .setExpirationTime(claims.exp ?? now + 60);
    if (!('jti' in claims)) jwt.setJti(randomUUID());
    else if (claims.jti !== undefined) jwt.setJti(claims.jti);
    return jwt.sign(key);
  }

  const withAssertion = async (value: string, extra: [string, string][] = []) =>
    postForm(sts.tokenUrl, agent('alice'), exchangeForm(await subjectToken(), [['client_assertion_type', JWT_BEARER], ['client_assertion', value], ...extra]));

  test("RFC 7523 2.2: the sidecar's privateKeyJwt() assertion is accepted (aud = token endpoint URL), and the token is bound", async () => {
    const claims = decodeJwt(await exchangeWith(sidecarAuth()));
    assert.equal(claims['client_id'], 'jwt-client');
    assert.deepEqual(claims['cnf'], { 'x5t#S256': certificateThumbprint(pki.alice.certPem) });
  });

  test('RFC 7523 3 item 3: aud = the issuer is accepted too', async () => {
    assert.equal(decodeJwt(await exchangeWith(sidecarAuth({ audience: sts.issuer })))['client_id'], 'jwt-client');
  });

  test('RFC 7523 3.1: an assertion signed with an unregistered key -> invalid_client', async () => {
    await assert.rejects(exchangeWith(sidecarAuth({ key: otherKey })), (err: unknown) => err instanceof StsOAuthError && err.error === 'invalid_client');
  });

  test('RFC 7523 3 item 3: an assertion for another audience -> invalid_client', async () => {
    await assert.rejects(
      exchangeWith(sidecarAuth({ audience: 'https://other-sts.example/token' })),
      (err: unknown) => err instanceof StsOAuthError && err.error === 'invalid_client' && /'aud'/.test(err.errorDescription ?? ''),
    );
  });

  test('RFC 7523 3 item 4: an expired assertion, or one expiring unreasonably far ahead -> invalid_client', async () => {
    const now = Math.floor(Date.now() / 1000);
    assert.match(assertInvalidClient(await withAssertion(await assertion({ exp: now - 60 }))), /expired/);
    assert.match(assertInvalidClient(await withAssertion(await assertion({ exp: now + 3600 }))), /more than 300 s/);
  });

  test('RFC 7523 3 item 7: a replayed assertion (same jti) is refused the second time', async () => {
    const once = await assertion({ jti: randomUUID() });
    assert.equal((await withAssertion(once)).status, 200);
    const description = assertInvalidClient(await withAssertion(once));
    assert.match(description, /already used/);
    assert.ok(!description.includes(once), 'the assertion is never echoed');
  });

  test('RFC 7521 4.2 / OIDC Core 9: missing jti, client_id not matching sub, wrong assertion type', async () => {
    assert.match(assertInvalidClient(await withAssertion(await assertion({ jti: undefined }))), /'jti'/);
    assertInvalidClient(await withAssertion(await assertion({}), [['client_id', 'someone-else']]));
    const wrongType = await postForm(
      sts.tokenUrl,
      agent('alice'),
      exchangeForm(await subjectToken(), [['client_assertion_type', 'urn:example:saml'], ['client_assertion', await assertion({})]]),
    );
    assertInvalidClient(wrongType);
  });

  test('RFC 6749 2.3: an assertion together with a client_secret -> invalid_request', async () => {
    const reply = await withAssertion(await assertion({}), [['client_id', 'jwt-client'], ['client_secret', 'x']]);
    assert.equal(reply.status, 400, reply.text);
    assert.equal(reply.body['error'], 'invalid_request');
  });
});

describe('logs (never a token, an assertion or a key)', () => {
  test('an mTLS exchange with private_key_jwt logs the client, method and x5t#S256, but no token or assertion', async (t) => {
    const lines: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const jwk = await exportJWK(key);
    delete jwk.d;
    const sts = await mtlsSts({ logger, clients: [{ clientId: 'logged', jwks: { keys: [jwk] } }] });
    t.after(() => sts.close());
    const now = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer('logged')
      .setSubject('logged')
      .setAudience(sts.tokenUrl)
      .setExpirationTime(now + 60)
      .setJti(randomUUID())
      .sign(key);
    const subject = await subjectToken();
    const form = exchangeForm(subject, [['client_assertion_type', JWT_BEARER], ['client_assertion', assertion]]);
    const issued = await postForm(sts.tokenUrl, agent('alice'), form);
    assert.equal(issued.status, 200, issued.text);
    assertInvalidClient(await postForm(sts.tokenUrl, agent('alice'), form)); // the replay
    const text = lines.join('');
    for (const secret of [subject, assertion, issued.body['access_token'] as string, pki.alice.keyPem]) assert.ok(!text.includes(secret));
    const entry = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'token issued');
    assert.equal(entry?.['clientAuth'], 'private_key_jwt');
    assert.equal(entry?.['x5tS256'], certificateThumbprint(pki.alice.certPem));
  });
});

describe('dev STS TLS options and flags', () => {
  test('start-up refuses a key that does not match the certificate, tls_client_auth without TLS, and two methods per client', async () => {
    await assert.rejects(
      startDevSts({ tls: { cert: pki.server.certPem, key: pki.alice.keyPem } }),
      (err: unknown) => err instanceof ConfigError && err.path === 'devSts.tls',
    );
    await assert.rejects(startDevSts({ clients: [{ clientId: 'c', tlsClientAuthSanUri: ALICE_SPIFFE_ID }] }), /tls_client_auth, which needs the tls option/);
    await assert.rejects(
      startDevSts({ clients: [{ clientId: 'c', clientSecret: 's', tlsClientAuthSubjectDn: 'CN=alice' }] }),
      (err: unknown) => err instanceof ConfigError && err.path === 'devSts.clients[0]',
    );
    await assert.rejects(startDevSts({ tls: { cert: pki.server.certPem, key: pki.server.keyPem }, clients: [{ clientId: 'c', tlsClientAuthSanIp: 'not-an-ip' }] }), /tlsClientAuthSanIp/);
  });

  test('dev-sts --tls-cert/--tls-key/--tls-ca/--require-client-cert/--cnf-encoding/--tls-client serve mTLS until stopped', async (t) => {
    const dir = await tempDir('devsts-mtls-cli-');
    t.after(() => dir.cleanup());
    const file = async (name: string, text: string) => {
      const path = join(dir.path, name);
      await writeFile(path, text, { mode: 0o600 });
      return path;
    };
    const jwks = await file('jwks.json', JSON.stringify(workload.jwks));
    let out = '';
    const stdout = { write: (chunk: string) => ((out += chunk), true) };
    const stop = new AbortController();
    const exit = runDevStsCommand(
      [
        '--listen', '127.0.0.1:0',
        '--tls-cert', await file('sts.crt', pki.server.certPem),
        '--tls-key', await file('sts.key', pki.server.keyPem),
        '--tls-ca', await file('ca.crt', pki.ca.certPem),
        '--require-client-cert',
        '--cnf-encoding', 'base64-padded',
        '--tls-client', `alice-app:san-uri=${ALICE_SPIFFE_ID}`,
        '--trust-issuer', workload.issuer, '--trust-jwks', jwks,
      ],
      { stdout, stderr: stdout, signal: stop.signal, logger: pino({ level: 'silent' }) },
    );
    try {
      const tokenUrl = await eventually(() => /token endpoint: (\S+)/.exec(out)?.[1], { timeoutMs: 3000 }).catch(() => undefined);
      if (tokenUrl === undefined) assert.fail(`no token endpoint printed: ${out}`);
      assert.ok(tokenUrl.startsWith('https://'), out);
      assert.match(out, /client certificates: required/);
      assertInvalidClient(await postForm(tokenUrl, agent(), exchangeForm(await subjectToken(), [['client_id', 'alice-app']])));
      assertInvalidClient(await postForm(tokenUrl, agent('bob'), exchangeForm(await subjectToken(), [['client_id', 'alice-app']])));
      const cnf = cnfOf(await postForm(tokenUrl, agent('alice'), exchangeForm(await subjectToken(), [['client_id', 'alice-app']])));
      assert.equal(cnf, Buffer.from(certificateThumbprint(pki.alice.certPem), 'base64url').toString('base64'));
    } finally {
      stop.abort();
      assert.equal(await exit, 0);
    }
  });

  test('dev-sts TLS flag mistakes return 2 naming the flag, without printing file contents', async () => {
    const cases: [string[], RegExp][] = [
      [['--tls-key', '/nonexistent.key'], /--tls-key: needs --tls-cert/],
      [['--require-client-cert'], /--require-client-cert: needs --tls-cert/],
      [['--tls-cert', '/nonexistent.crt'], /--tls-key: required with --tls-cert/],
      [['--tls-cert', '/nonexistent.crt', '--tls-key', '/nonexistent.key'], /--tls-cert: cannot read '\/nonexistent.crt' \(ENOENT\)/],
      [['--cnf-encoding', 'hex'], /--cnf-encoding/],
      [['--tls-client', 'no-type'], /--tls-client: expected ID:TYPE=VALUE/],
      [['--jwt-client', 'c:/nonexistent.json'], /--jwt-client: cannot read/],
    ];
    for (const [argv, message] of cases) {
      let err = '';
      const code = await runDevStsCommand(argv, { stdout: { write: () => true }, stderr: { write: (c: string) => (err += c) }, logger: pino({ level: 'silent' }) });
      assert.equal(code, 2, argv.join(' '));
      assert.match(err, message);
    }
  });
});

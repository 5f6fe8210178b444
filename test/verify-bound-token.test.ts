/**
 * verifyBoundToken, the resource-server half of RFC 8705 section 3: the seed's
 * alice/bob scenario over real mTLS connections (tokens from the reference STS), the
 * accepted certificate and key-set forms, and every refusal with its stable code.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { createLocalJWKSet, decodeJwt, generateKeyPair, exportJWK, SignJWT, type JSONWebKeySet, type JWTPayload } from 'jose';
import type { Agent } from 'undici';
import { startDemoUpstream, type DemoUpstream } from '../src/demo/upstream.js';
import { createWorkloadIssuer, startDevSts, type DevSts } from '../src/devsts/index.js';
import { BoundTokenError, verifyBoundToken, type BoundTokenErrorCode, type PeerCertificateInput } from 'sts-sidecar/verify';
import { certificateThumbprint } from '../src/tls/thumbprint.js';
import { startHttpServer, type LoopbackServer } from './helpers/loopback.js';
import { createTestPki, exchangeForm, postForm, send, tlsAgent, type TestPki } from './helpers/mtls.js';

const AUDIENCE = 'https://server.domain.com:8443';
const pki: TestPki = createTestPki();
const workload = createWorkloadIssuer({ issuer: 'https://kubernetes.default.svc' });
const agents: Agent[] = [];
function agent(client?: 'alice' | 'bob' | 'mallory'): Agent {
  const a = tlsAgent(pki.ca.certPem, client ? pki[client] : undefined);
  agents.push(a);
  return a;
}
after(() => Promise.all(agents.map((a) => a.close())));

async function rejectsWith(promise: Promise<unknown>, code: BoundTokenErrorCode, token?: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof BoundTokenError, String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.status, 401);
    if (token !== undefined) assert.ok(!err.message.includes(token), 'the token is never in the message');
    return true;
  });
}

/** A token from the reference STS, exchanged over mTLS with `who`'s certificate (or none). */
async function exchangeAt(sts: DevSts, who: 'alice' | 'bob' | undefined): Promise<string> {
  const subject = await workload.mint({ sub: `system:serviceaccount:apps:${who ?? 'anonymous'}`, aud: 'sts' });
  const reply = await postForm(sts.tokenUrl, agent(who), exchangeForm(subject, [['audience', AUDIENCE]]));
  assert.equal(reply.status, 200, reply.text);
  return reply.body['access_token'] as string;
}

describe("the seed's alice/bob scenario over real mTLS (RFC 8705 3)", () => {
  let sts: DevSts;
  let resource: LoopbackServer;
  let aliceToken: string;
  let bobToken: string;
  let unboundToken: string;

  /** A protected service written the way the README shows. */
  async function protectedHandler(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    try {
      const claims = await verifyBoundToken(token, (req.socket as TLSSocket).getPeerCertificate(true), {
        jwks: sts.publicJwks,
        issuer: sts.issuer,
        audience: AUDIENCE,
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sub: claims.sub }));
    } catch (err) {
      const code = err instanceof BoundTokenError ? err.code : 'unexpected';
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_token', code }));
    }
  }

  before(async () => {
    sts = await startDevSts({
      trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }],
      tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem },
    });
    resource = await startHttpServer((req, res) => void protectedHandler(req, res), {
      tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true },
    });
    [aliceToken, bobToken, unboundToken] = await Promise.all([exchangeAt(sts, 'alice'), exchangeAt(sts, 'bob'), exchangeAt(sts, undefined)]);
  });
  after(() => Promise.all([sts.close(), resource.close()]));

  const call = (who: 'alice' | 'bob', token: string) => send(`${resource.url}/orders`, agent(who), { headers: { authorization: `Bearer ${token}` } });

  test("RFC 8705 3: alice's token over alice's certificate is accepted", async () => {
    const reply = await call('alice', aliceToken);
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.body['sub'], 'system:serviceaccount:apps:alice');
  });

  test("RFC 8705 3: alice's token over bob's certificate -> 401 ERR_BOUND_TOKEN_MISMATCH (and bob's own token works)", async () => {
    const stolen = await call('bob', aliceToken);
    assert.equal(stolen.status, 401, stolen.text);
    assert.deepEqual(stolen.body, { error: 'invalid_token', code: 'ERR_BOUND_TOKEN_MISMATCH' });
    assert.equal((await call('bob', bobToken)).status, 200);
  });

  test('RFC 8705 3.1: an unbound token is refused when binding is required (the default), accepted when not', async () => {
    assert.deepEqual((await call('alice', unboundToken)).body, { error: 'invalid_token', code: 'ERR_BOUND_TOKEN_NOT_BOUND' });
    const claims = await verifyBoundToken(unboundToken, pki.alice.certificate, {
      jwks: sts.publicJwks,
      issuer: sts.issuer,
      audience: AUDIENCE,
      requireBinding: false,
    });
    assert.equal(claims.cnf, undefined);
    // Relaxing the requirement does not relax a binding that is there.
    await rejectsWith(verifyBoundToken(aliceToken, pki.bob.certificate, { jwks: sts.publicJwks, issuer: sts.issuer, audience: AUDIENCE, requireBinding: false }), 'ERR_BOUND_TOKEN_MISMATCH');
  });

  test('RFC 8705 3: a bound token without any client certificate -> ERR_BOUND_TOKEN_NO_CLIENT_CERT', async () => {
    const opts = { jwks: sts.publicJwks, issuer: sts.issuer, audience: AUDIENCE };
    await rejectsWith(verifyBoundToken(aliceToken, undefined, opts), 'ERR_BOUND_TOKEN_NO_CLIENT_CERT', aliceToken);
    // What getPeerCertificate() returns when the client sent none.
    await rejectsWith(verifyBoundToken(aliceToken, {} as PeerCertificateInput, opts), 'ERR_BOUND_TOKEN_NO_CLIENT_CERT');
  });

  test('the peer certificate as X509Certificate, DER Buffer, PEM text or tls.PeerCertificate gives the same answer', async () => {
    const opts = { jwks: sts.publicJwks, issuer: sts.issuer, audience: AUDIENCE };
    const forms = (kp: TestPki['alice']): PeerCertificateInput[] => [
      kp.certificate,
      kp.certificate.raw,
      kp.certPem,
      new X509Certificate(kp.certPem),
      { raw: kp.certificate.raw } as PeerCertificateInput,
    ];
    for (const form of forms(pki.alice)) assert.equal((await verifyBoundToken(aliceToken, form, opts)).sub, 'system:serviceaccount:apps:alice');
    for (const form of forms(pki.bob)) await rejectsWith(verifyBoundToken(aliceToken, form, opts), 'ERR_BOUND_TOKEN_MISMATCH');
  });

  test('the key set as a JWKS object, a jose key-set function, or a URL (fetched once and cached)', async (t) => {
    let fetches = 0;
    const jwksServer = await startHttpServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(sts.publicJwks));
    });
    t.after(() => jwksServer.close());
    const base = { issuer: sts.issuer, audience: AUDIENCE };
    assert.ok(await verifyBoundToken(aliceToken, pki.alice.certPem, { ...base, jwks: createLocalJWKSet(sts.publicJwks) }));
    for (let i = 0; i < 3; i++) assert.ok(await verifyBoundToken(aliceToken, pki.alice.certPem, { ...base, jwks: new URL(`${jwksServer.url}/jwks`) }));
    assert.ok(await verifyBoundToken(aliceToken, pki.alice.certPem, { ...base, jwks: `${jwksServer.url}/jwks` }));
    assert.equal(fetches, 1);
  });
});

describe('the padded standard-base64 form (the seed STS)', () => {
  test("RFC 8705 3.1 tolerance: a padded cnf from the STS is accepted over alice's certificate and refused over bob's", async (t) => {
    const sts = await startDevSts({
      trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }],
      tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem },
      cnfEncoding: 'base64-padded',
    });
    t.after(() => sts.close());
    const token = await exchangeAt(sts, 'alice');
    const cnf = (decodeJwt(token)['cnf'] as Record<string, string>)['x5t#S256'];
    assert.match(cnf ?? '', /=$/, 'the STS really emitted the padded form');
    const opts = { jwks: sts.publicJwks, issuer: sts.issuer, audience: AUDIENCE };
    assert.equal((await verifyBoundToken(token, pki.alice.certificate, opts)).sub, 'system:serviceaccount:apps:alice');
    await rejectsWith(verifyBoundToken(token, pki.bob.certificate, opts), 'ERR_BOUND_TOKEN_MISMATCH');
  });
});

describe('token verification before binding (RFC 6750 3.1 invalid_token)', () => {
  const issuer = 'https://sts.domain.com';
  let sign: (claims: JWTPayload) => Promise<string>;
  let jwks: JSONWebKeySet;
  let otherSign: (claims: JWTPayload) => Promise<string>;
  const now = () => Math.floor(Date.now() / 1000);
  const aliceCnf = () => ({ 'x5t#S256': certificateThumbprint(pki.alice.certPem) });

  before(async () => {
    const mk = async () => {
      const { privateKey, publicKey } = await generateKeyPair('ES256');
      const jwk = { ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256' };
      const s = (claims: JWTPayload) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k' }).sign(privateKey);
      return { s, jwk };
    };
    const main = await mk();
    sign = main.s;
    jwks = { keys: [main.jwk] };
    otherSign = (await mk()).s;
  });

  const claims = (extra: JWTPayload = {}): JWTPayload => ({ iss: issuer, sub: 'alice', aud: AUDIENCE, iat: now(), exp: now() + 300, cnf: aliceCnf(), ...extra });
  const verify = (token: string) => verifyBoundToken(token, pki.alice.certificate, { jwks, issuer, audience: AUDIENCE });

  test('a well-formed bound token of the seed shape verifies and returns its claims', async () => {
    const payload = await verify(await sign(claims()));
    assert.equal(payload.sub, 'alice');
    assert.deepEqual(payload.cnf, aliceCnf());
  });

  test('RFC 7519 4.1: wrong issuer, wrong audience, expired, no exp -> ERR_BOUND_TOKEN_INVALID, token never in the message', async () => {
    for (const extra of [{ iss: 'https://evil.example' }, { aud: 'https://other.example' }, { exp: now() - 60 }, { exp: undefined }]) {
      const token = await sign(claims(extra));
      await rejectsWith(verify(token), 'ERR_BOUND_TOKEN_INVALID', token);
    }
  });

  test('RFC 7515: a signature by another key, or a tampered payload -> ERR_BOUND_TOKEN_INVALID', async () => {
    await rejectsWith(verify(await otherSign(claims())), 'ERR_BOUND_TOKEN_INVALID');
    const [h, , s] = (await sign(claims())).split('.');
    const forged = Buffer.from(JSON.stringify(claims({ sub: 'admin' }))).toString('base64url');
    await rejectsWith(verify(`${h}.${forged}.${s}`), 'ERR_BOUND_TOKEN_INVALID');
    await rejectsWith(verify('not-a-jwt'), 'ERR_BOUND_TOKEN_INVALID');
  });

  test('RFC 7800 3.1: a cnf of another method (jkt) is not downgraded to bearer, even with requireBinding false', async () => {
    const token = await sign(claims({ cnf: { jkt: 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs' } }));
    await rejectsWith(verifyBoundToken(token, pki.alice.certificate, { jwks, issuer, audience: AUDIENCE, requireBinding: false }), 'ERR_BOUND_TOKEN_NOT_BOUND');
  });

  test('RFC 8705 3.1: a cnf.x5t#S256 that is not a SHA-256 thumbprint -> ERR_BOUND_TOKEN_INVALID', async () => {
    for (const value of ['abc', 12345, certificateThumbprint(pki.alice.certPem).slice(0, 40)]) {
      await rejectsWith(verify(await sign(claims({ cnf: { 'x5t#S256': value } }))), 'ERR_BOUND_TOKEN_INVALID');
    }
    await rejectsWith(verify(await sign(claims({ cnf: 'x' }))), 'ERR_BOUND_TOKEN_INVALID');
  });
});

describe('the demo upstream over mTLS (RFC 8705 3, RFC 6750 3)', () => {
  let sts: DevSts;
  let upstream: DemoUpstream;
  before(async () => {
    sts = await startDevSts({
      trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }],
      tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem },
    });
    upstream = await startDemoUpstream({
      jwks: sts.publicJwks,
      issuer: sts.issuer,
      audience: AUDIENCE,
      tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem },
    });
  });
  after(() => Promise.all([sts.close(), upstream.close()]));

  test("accepts alice's token over alice's certificate and shows its cnf; refuses it over bob's with 401 and a reason code", async () => {
    const token = await exchangeAt(sts, 'alice');
    const ok = await send(`${upstream.url}/orders/42`, agent('alice'), { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual((ok.body['token'] as Record<string, unknown>)['cnf'], { 'x5t#S256': certificateThumbprint(pki.alice.certPem) });

    const stolen = await send(`${upstream.url}/orders/42`, agent('bob'), { headers: { authorization: `Bearer ${token}` } });
    assert.equal(stolen.status, 401);
    assert.equal(stolen.body['error'], 'invalid_token');
    assert.equal(stolen.body['code'], 'ERR_BOUND_TOKEN_MISMATCH');
    assert.match(String(stolen.headers['www-authenticate']), /^Bearer error="invalid_token"/);
    assert.ok(!stolen.text.includes(token));

    const noCert = await send(`${upstream.url}/orders/42`, agent(), { headers: { authorization: `Bearer ${token}` } });
    assert.equal(noCert.body['code'], 'ERR_BOUND_TOKEN_NO_CLIENT_CERT');
    const untrusted = await send(`${upstream.url}/orders/42`, agent('mallory'), { headers: { authorization: `Bearer ${token}` } });
    assert.equal(untrusted.body['code'], 'ERR_BOUND_TOKEN_NO_CLIENT_CERT', 'an untrusted certificate counts as none');
  });
});

/**
 * DPoP building blocks (RFC 9449) checked against jose's own verification: the key and its
 * RFC 7638 thumbprint, proofs (section 4.2), nonces (section 8), and the token request
 * (section 5) against a loopback STS: proof sent, `use_dpop_nonce` retried, the reply's
 * token type and `cnf.jkt` checked.
 */
import { describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify, UnsecuredJWT } from 'jose';
import { DpopError, StsError, type ErrorCode } from '../src/errors.js';
import { createDpopProof, demandsNonce, dpopKeyFromText, generateDpopKey, NonceStore, openDpopKeySource, proofTargetUri } from '../src/dpop/index.js';
import { createStsClient, noClientAuth, type ExchangeParams } from '../src/sts/index.js';
import { withDpopBinding } from '../src/sts/dpop-binding.js';
import { parseConfig } from '../src/config/load.js';
import { configProblems } from './helpers/config-problems.js';
import { eventually } from './helpers/eventually.js';
import { json, startFakeSts } from './helpers/fake-sts.js';
import { tempDir } from './helpers/loopback.js';

const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

async function verifyProof(proof: string) {
  return jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256', 'EdDSA', 'RS256'] });
}

describe('RFC 9449 section 4.2: DPoP proofs', () => {
  for (const algorithm of ['ES256', 'EdDSA', 'RS256'] as const) {
    test(`a ${algorithm} proof verifies with its embedded public key and has every claim`, async () => {
      const key = await generateDpopKey(algorithm);
      const proof = await createDpopProof(key, { method: 'GET', url: 'HTTPS://API.Example.com:443/a/b?q=1#frag', accessToken: 'tok', nonce: 'n-1' });
      const { payload, protectedHeader } = await verifyProof(proof);
      assert.equal(protectedHeader.alg, algorithm);
      assert.equal(protectedHeader.typ, 'dpop+jwt');
      const jwk = protectedHeader.jwk!;
      assert.equal((jwk as Record<string, unknown>)['d'], undefined, 'no private member in the jwk header');
      assert.equal(await calculateJwkThumbprint(jwk, 'sha256'), key.thumbprint);
      assert.equal(payload['htm'], 'GET');
      assert.equal(payload['htu'], 'https://api.example.com/a/b');
      assert.equal(payload['ath'], createHash('sha256').update('tok').digest('base64url'));
      assert.equal(payload['nonce'], 'n-1');
      assert.equal(typeof payload['jti'], 'string');
      assert.ok(Math.abs((payload.iat ?? 0) - Date.now() / 1000) < 60);
    });
  }

  test('each proof has its own jti; no ath or nonce unless given', async () => {
    const key = await generateDpopKey();
    const a = await verifyProof(await createDpopProof(key, { method: 'POST', url: 'http://127.0.0.1:8080/token' }));
    const b = await verifyProof(await createDpopProof(key, { method: 'POST', url: 'http://127.0.0.1:8080/token' }));
    assert.notEqual(a.payload.jti, b.payload.jti);
    assert.equal(a.payload['ath'], undefined);
    assert.equal(a.payload['nonce'], undefined);
  });

  test('htu drops query and fragment and normalises scheme, host and default port', () => {
    assert.equal(proofTargetUri('http://Example.COM:80/p/%41?x#y'), 'http://example.com/p/%41');
    assert.equal(proofTargetUri('https://h:8443/'), 'https://h:8443/');
  });
});

describe('the DPoP key (RFC 7638 thumbprint, files)', () => {
  test('a PEM and a JWK file give the same key; other key types are refused', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const fromPem = await dpopKeyFromText(privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    const fromJwk = await dpopKeyFromText(JSON.stringify(privateKey.export({ format: 'jwk' })));
    assert.equal(fromPem.thumbprint, fromJwk.thumbprint);
    assert.equal(fromPem.algorithm, 'ES256');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    await assert.rejects(dpopKeyFromText(p384), (e: DpopError) => e.code === 'ERR_DPOP_KEY_INVALID');
    await assert.rejects(dpopKeyFromText('not a key'), (e: DpopError) => e.code === 'ERR_DPOP_KEY_INVALID');
    const pub = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
    await assert.rejects(dpopKeyFromText(pub), (e: DpopError) => e.code === 'ERR_DPOP_KEY_INVALID');
  });

  test('a watched key file: a rewrite is a new key, announced; a broken rewrite keeps the old one', async (t) => {
    const dir = await tempDir();
    t.after(() => dir.cleanup());
    const path = join(dir.path, 'dpop.pem');
    const pem = () => generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    writeFileSync(path, pem());
    const keys = await openDpopKeySource({ path, algorithm: 'ES256', pollIntervalMs: 50 });
    t.after(() => keys.close());
    const first = keys.current();
    assert.equal(first.algorithm, 'EdDSA');
    let changes = 0;
    keys.onChange(() => changes++);
    writeFileSync(path, 'half-written');
    writeFileSync(path, pem());
    await eventually(() => keys.current().thumbprint !== first.thumbprint);
    assert.equal(changes, 1);
    writeFileSync(path, '-----BEGIN PRIVATE KEY-----\ngarbage\n');
    const second = keys.current();
    await eventually(() => keys.current() === second && changes === 1, { what: 'the broken file ignored' });
  });
});

describe('RFC 9449 section 8: nonces', () => {
  test('the store keeps the last valid nonce per origin and is bounded', () => {
    const store = new NonceStore(2);
    assert.equal(store.update('https://a', 'n1'), true);
    assert.equal(store.update('https://a', 'bad nonce with spaces'), false);
    assert.equal(store.get('https://a'), 'n1');
    store.update('https://b', 'n2');
    store.update('https://c', 'n3');
    assert.equal(store.size, 2);
    assert.equal(store.get('https://a'), undefined);
  });

  test('a WWW-Authenticate DPoP challenge with use_dpop_nonce is recognised', () => {
    assert.equal(demandsNonce('DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"'), true);
    assert.equal(demandsNonce('Bearer error="invalid_token", DPoP algs="ES256"'), false);
    assert.equal(demandsNonce(undefined), false);
  });
});

describe('RFC 9449 section 5: the token request', () => {
  const PARAMS: ExchangeParams = { subjectToken: 'subject', subjectTokenType: JWT_TYPE };
  const boundJwt = (jkt: string) => new UnsecuredJWT({ cnf: { jkt }, exp: Math.floor(Date.now() / 1000) + 600 }).encode();

  test('the request carries a proof (htm POST, htu the token endpoint); use_dpop_nonce is retried once with the nonce', async (t) => {
    const key = await generateDpopKey();
    let n = 0;
    const sts = await startFakeSts({
      answer: async (res, request) => {
        n++;
        const proof = String(request.headers['dpop']);
        const { payload } = await verifyProof(proof);
        if (payload['nonce'] !== 'server-nonce') return json(400, { error: 'use_dpop_nonce' }, { 'dpop-nonce': 'server-nonce' })(res, request, sts);
        assert.equal(payload['htm'], 'POST');
        assert.equal(payload['htu'], sts.tokenUrl);
        assert.equal(decodeProtectedHeader(proof).jwk?.x, key.publicJwk.x);
        json(200, { access_token: boundJwt(key.thumbprint), issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'dpop', expires_in: 60 })(res, request, sts);
      },
    });
    t.after(() => sts.close());
    const client = createStsClient({ url: new URL(sts.tokenUrl), encoding: 'form', clientAuth: noClientAuth(), timeoutMs: 5000, maxResponseBytes: 65536 });
    t.after(() => client.close());
    const exchange = withDpopBinding((p, i) => client.exchange(p, i));
    const token = await exchange({ ...PARAMS, dpop: { key, allowBearer: false } }, undefined, 'r');
    assert.equal(token.tokenType, 'dpop');
    assert.equal(n, 2);
    // The nonce is kept: the next request sends it at once.
    await exchange({ ...PARAMS, dpop: { key, allowBearer: false } }, undefined, 'r');
    assert.equal(n, 3);
  });

  test('a DPoP reply without a proof sent is refused; a Bearer reply to a proof is refused unless allowed', async (t) => {
    const key = await generateDpopKey();
    let tokenType = 'DPoP';
    const sts = await startFakeSts({
      answer: (res, request) => json(200, { access_token: 'opaque', issued_token_type: ACCESS_TOKEN_TYPE, token_type: tokenType, expires_in: 60 })(res, request, sts),
    });
    t.after(() => sts.close());
    const client = createStsClient({ url: new URL(sts.tokenUrl), encoding: 'form', clientAuth: noClientAuth(), timeoutMs: 5000, maxResponseBytes: 65536 });
    t.after(() => client.close());
    const exchange = withDpopBinding((p, i) => client.exchange(p, i));
    const code = (c: ErrorCode) => (e: StsError) => e.code === c;
    await assert.rejects(exchange(PARAMS, undefined, 'r'), code('ERR_STS_RESPONSE_INVALID'));
    tokenType = 'Bearer';
    await assert.rejects(exchange({ ...PARAMS, dpop: { key, allowBearer: false } }, undefined, 'r'), code('ERR_STS_DPOP_NOT_BOUND'));
    assert.equal((await exchange({ ...PARAMS, dpop: { key, allowBearer: true } }, undefined, 'r')).tokenType, 'Bearer');
  });

  test('cnf.jkt naming another key: discarded and asked once more; twice fails closed', async () => {
    const key = await generateDpopKey();
    const other = await generateDpopKey();
    const replies = [boundJwt(other.thumbprint), boundJwt(key.thumbprint), boundJwt(other.thumbprint), boundJwt(other.thumbprint)];
    let mismatches = 0;
    const exchange = withDpopBinding(
      async () => ({ accessToken: replies.shift()!, issuedTokenType: ACCESS_TOKEN_TYPE, tokenType: 'DPoP', issuedAt: Date.now(), expiresAt: Date.now() + 60_000, scope: undefined }),
      { bindingMismatch: () => mismatches++ },
    );
    const params = { ...PARAMS, dpop: { key, allowBearer: false } };
    assert.equal((await exchange(params, undefined, 'r')).accessToken, boundJwt(key.thumbprint));
    assert.equal(mismatches, 1);
    await assert.rejects(exchange(params, undefined, 'r'), (e: StsError) => e.code === 'ERR_STS_DPOP_BINDING_MISMATCH');
    assert.equal(mismatches, 3);
  });
});

describe('config: routes[].binding, routes[].dpop and dpop', () => {
  const base = { subjectToken: { value: 's' }, sts: { url: 'http://127.0.0.1:9/token' } };
  const route = { name: 'api', listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:9' };
  const paths = (input: unknown) => configProblems(input).map((p) => p.path);

  test('binding dpop with defaults; dpop.* defaults', () => {
    const config = parseConfig({ ...base, routes: [{ ...route, binding: 'dpop' }] });
    assert.equal(config.routes[0]!.binding, 'dpop');
    assert.deepEqual(config.dpop, { algorithm: 'ES256', pollIntervalSeconds: 5 });
    assert.equal(parseConfig({ ...base, routes: [route] }).routes[0]!.binding, 'auto');
  });

  test('refused: dpop settings without binding dpop, a token-only dpop route, another token header, an unknown algorithm', () => {
    assert.deepEqual(paths({ ...base, routes: [{ ...route, dpop: { allowBearer: true } }] }), ['routes[0].dpop']);
    // (A token-only route no endpoint serves is refused on its own too: routes[0].upstream.)
    assert.ok(paths({ ...base, routes: [{ name: 'bare', binding: 'dpop' }] }).includes('routes[0].binding'));
    assert.deepEqual(paths({ ...base, routes: [{ ...route, binding: 'dpop', authorization: { header: 'x-token' } }] }), ['routes[0].authorization.header']);
    assert.deepEqual(paths({ ...base, dpop: { algorithm: 'HS256' }, routes: [route] }), ['dpop.algorithm']);
  });
});

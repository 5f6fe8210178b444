/**
 * The reference STS against real loopback HTTP: fetch and /usr/bin/curl as clients,
 * jose as the relying party verifying issued tokens through the JWKS endpoint.
 * Wire identifiers are spelled out here rather than imported, so a typo in the
 * implementation's constants cannot make the tests agree with it.
 */
import { after, before, describe, test } from 'node:test';
// A namespace import: this tsconfig has no esModuleInterop, so a default import fails TS1259.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import pino from 'pino';
import { createWorkloadIssuer, runDevStsCommand, startDevSts, type DevSts, type WorkloadIssuer } from '../src/devsts/index.js';
// The mTLS seam is internal to devsts (the future TLS listener lives there too), so it is tested directly.
import { createExchanger } from '../src/devsts/exchange.js';
import { createJwtVerifier } from '../src/devsts/jwt-verifier.js';
import { createTokenSigner } from '../src/devsts/token-signer.js';
import { parseExchangeRequest } from '../src/devsts/exchange-request.js';
import { parseFormParams } from '../src/oauth/request-parsing.js';
import { eventually } from './helpers/eventually.js';
import { postForm, send, type Reply } from './helpers/loopback.js';

const execFileAsync = promisify(execFile);

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const FORM = 'application/x-www-form-urlencoded';

/** RFC 6749 section 5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E. */
const DESCRIPTION_CHARSET = /^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/;

function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return send(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

function exchangePairs(subjectToken: string, extra: [string, string][] = [], subjectTokenType = JWT): [string, string][] {
  return [['grant_type', GRANT], ['subject_token', subjectToken], ['subject_token_type', subjectTokenType], ...extra];
}

/** Every error: RFC 6749 section 5.2 JSON body, charset-clean description, section 5.1 no-store. */
function assertOAuthError(reply: Reply, status: number, error: string): string {
  assert.equal(reply.status, status, reply.text);
  assert.equal(reply.body['error'], error, reply.text);
  const description = reply.body['error_description'];
  assert.equal(typeof description, 'string');
  assert.match(description as string, DESCRIPTION_CHARSET);
  assert.equal(reply.headers.get('cache-control'), 'no-store');
  assert.match(reply.headers.get('content-type') ?? '', /^application\/json/);
  return description as string;
}

function assertNoToken(description: string, ...tokens: string[]): void {
  for (const token of tokens) {
    assert.ok(!description.includes(token), 'error_description must not contain the token');
    // Not even a recognisable part of it (the signature or payload segment).
    for (const part of token.split('.')) if (part.length > 16) assert.ok(!description.includes(part));
  }
}

/** RFC 6749 Appendix B encoding, as a client must apply it before Basic (section 2.3.1). */
function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}

function basic(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(secret)}`).toString('base64')}`;
}

async function curl(args: string[]): Promise<{ status: number; body: Record<string, unknown> }> {
  const { stdout } = await execFileAsync('/usr/bin/curl', ['-sS', '-w', '\n%{http_code}', ...args]);
  const newline = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(newline + 1)), body: JSON.parse(stdout.slice(0, newline)) as Record<string, unknown> };
}

describe('seed static exchange (grpc-go STS example)', () => {
  let sts: DevSts;
  before(async () => {
    sts = await startDevSts();
  });
  after(() => sts.close());

  test('RFC 8693 2.2.1: seed form-encoded exchange with curl, iamtheeggman -> iamthewalrus', async () => {
    // The seed's sts_req.txt, empty resource and audience included.
    const body =
      `grant_type=${encodeURIComponent(GRANT)}&resource=&audience=` +
      `&requested_token_type=${encodeURIComponent(AT)}&subject_token=iamtheeggman&subject_token_type=${encodeURIComponent(AT)}`;
    const reply = await curl(['-H', `Content-Type: ${FORM}`, '-d', body, sts.tokenUrl]);
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body, { access_token: 'iamthewalrus', issued_token_type: AT, token_type: 'Bearer', expires_in: 60 });
  });

  test('RFC 6749 3.2: seed snake_case JSON with curl; empty resource/audience count as omitted', async () => {
    const json = JSON.stringify({
      grant_type: GRANT,
      resource: '',
      audience: '',
      requested_token_type: AT,
      subject_token: 'iamtheeggman',
      subject_token_type: AT,
    });
    const reply = await curl(['-X', 'POST', '-H', 'Content-Type: application/json', '-d', json, sts.tokenUrl]);
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body, { access_token: 'iamthewalrus', issued_token_type: AT, token_type: 'Bearer', expires_in: 60 });
  });

  test('RFC 6749 5.1: token response is JSON and not cacheable', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [], AT));
    assert.equal(reply.status, 200);
    assert.match(reply.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(reply.headers.get('cache-control'), 'no-store');
    assert.equal(reply.headers.get('pragma'), 'no-cache');
  });

  test('RFC 8693 2.1: form content type with a charset parameter is accepted', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [], AT), {
      'content-type': `${FORM}; charset=UTF-8`,
    });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.body['access_token'], 'iamthewalrus');
  });

  test('Google STS v1/token: camelCase JSON with options at /v1/token', async () => {
    const reply = await postJson(`${sts.url}/v1/token`, {
      grantType: GRANT,
      audience: '//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov',
      scope: 'https://www.googleapis.com/auth/cloud-platform',
      requestedTokenType: AT,
      subjectToken: 'iamtheeggman',
      subjectTokenType: AT,
      options: JSON.stringify({ userProject: '123' }),
    });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.body, {
      access_token: 'iamthewalrus',
      issued_token_type: AT,
      token_type: 'Bearer',
      expires_in: 60,
      scope: 'https://www.googleapis.com/auth/cloud-platform',
    });
  });

  test('Google STS v1/token: options that are not a JSON object -> invalid_request', async () => {
    for (const options of ['{not json', '"a string"', '[1]']) {
      const reply = await postJson(sts.tokenUrl, { grantType: GRANT, subjectToken: 'iamtheeggman', subjectTokenType: AT, options });
      assertOAuthError(reply, 400, 'invalid_request');
    }
  });

  test('RFC 8693 2.2.1: an opaque static token is reported as access_token even when jwt was requested', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [['requested_token_type', JWT]], AT));
    assert.equal(reply.status, 200);
    assert.equal(reply.body['issued_token_type'], AT);
  });

  test('unknown opaque subject token -> invalid_grant without echoing it', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs('iamnottheeggman', [], AT));
    const description = assertOAuthError(reply, 400, 'invalid_grant');
    assertNoToken(description, 'iamnottheeggman');
  });
});

describe('JWT subject tokens (RFC 8693 with RFC 9068 access tokens)', () => {
  const LIFETIME = 600;
  let sts: DevSts;
  let workload: WorkloadIssuer;
  let stsKeys: ReturnType<typeof createRemoteJWKSet>;

  before(async () => {
    workload = createWorkloadIssuer({ issuer: 'https://kubernetes.test' });
    sts = await startDevSts({
      tokenLifetimeSeconds: LIFETIME,
      trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks, audience: 'dev-sts' }],
    });
    stsKeys = createRemoteJWKSet(new URL(sts.jwksUrl));
  });
  after(() => sts.close());

  const subject = (sub = 'system:serviceaccount:ns:app', expiresInSeconds?: number): Promise<string> =>
    workload.mint({ sub, aud: ['dev-sts'], ...(expiresInSeconds !== undefined ? { expiresInSeconds } : {}) });

  test('RFC 9068 2.2: a verified subject JWT is re-issued as an at+jwt that verifies against the JWKS endpoint', async () => {
    const before = Math.floor(Date.now() / 1000);
    const reply = await postForm(
      sts.tokenUrl,
      exchangePairs(await subject(), [
        ['audience', 'https://api.example'],
        ['scope', 'read write read'],
      ]),
    );
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.body['issued_token_type'], AT);
    assert.equal(reply.body['token_type'], 'Bearer');
    assert.equal(reply.body['expires_in'], LIFETIME);
    assert.equal(reply.body['scope'], 'read write');

    const token = reply.body['access_token'] as string;
    const { payload, protectedHeader } = await jwtVerify(token, stsKeys, {
      issuer: sts.issuer,
      audience: 'https://api.example',
      typ: 'at+jwt',
    });
    assert.equal(sts.issuer, sts.url);
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(protectedHeader.kid, sts.publicJwks.keys[0]?.kid);
    assert.equal(payload.sub, 'system:serviceaccount:ns:app');
    assert.equal(payload.aud, 'https://api.example');
    assert.equal(payload.scope, 'read write');
    assert.equal(typeof payload.jti, 'string');
    const iat = payload.iat ?? Number.NaN;
    assert.ok(iat >= before - 1 && iat <= before + 5, `iat ${iat} is now`);
    assert.equal(payload.exp, iat + LIFETIME);
    assert.equal(payload['client_id'], undefined);
    assert.equal(payload['act'], undefined);
  });

  test('RFC 8693 2.2.1: requested_token_type jwt -> issued_token_type jwt', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs(await subject(), [['requested_token_type', JWT]], ID_TOKEN));
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.body['issued_token_type'], JWT);
    assert.equal(reply.body['scope'], undefined);
    const payload = decodeJwt(reply.body['access_token'] as string);
    assert.equal(payload.aud, undefined, 'no audience or resource requested: aud is omitted');
  });

  test('RFC 8693 2.1: an unsupported requested_token_type -> invalid_request', async () => {
    const reply = await postForm(
      sts.tokenUrl,
      exchangePairs(await subject(), [['requested_token_type', 'urn:ietf:params:oauth:token-type:saml2']]),
    );
    assertOAuthError(reply, 400, 'invalid_request');
  });

  test('RFC 8693 2.1: repeated audience (form keys or JSON array) -> aud array in order', async () => {
    const token = await subject();
    const form = await postForm(sts.tokenUrl, exchangePairs(token, [['audience', 'svc-a'], ['audience', 'https://svc-b.example']]));
    assert.equal(form.status, 200, form.text);
    assert.deepEqual(decodeJwt(form.body['access_token'] as string).aud, ['svc-a', 'https://svc-b.example']);

    const json = await postJson(sts.tokenUrl, {
      grant_type: GRANT,
      subject_token: token,
      subject_token_type: JWT,
      audience: ['svc-a', 'svc-c'],
    });
    assert.equal(json.status, 200, json.text);
    assert.deepEqual(decodeJwt(json.body['access_token'] as string).aud, ['svc-a', 'svc-c']);
  });

  test('RFC 8693 2.1: resource only -> aud is the resource; audience wins when both are given', async () => {
    const token = await subject();
    const resourceOnly = await postForm(sts.tokenUrl, exchangePairs(token, [['resource', 'https://api.example/v1']]));
    assert.equal(resourceOnly.status, 200, resourceOnly.text);
    assert.equal(decodeJwt(resourceOnly.body['access_token'] as string).aud, 'https://api.example/v1');

    const both = await postForm(sts.tokenUrl, exchangePairs(token, [['resource', 'https://api.example/v1'], ['audience', 'api']]));
    assert.equal(decodeJwt(both.body['access_token'] as string).aud, 'api');
  });

  test('RFC 8693 2.1: resource must be an absolute URI without fragment -> invalid_target', async () => {
    const token = await subject();
    for (const resource of ['https://api.example/v1#frag', '/relative/path', 'not a uri']) {
      const reply = await postForm(sts.tokenUrl, exchangePairs(token, [['resource', resource]]));
      assertOAuthError(reply, 400, 'invalid_target');
    }
    const badAudience = await postForm(sts.tokenUrl, exchangePairs(token, [['audience', 'has space']]));
    assertOAuthError(badAudience, 400, 'invalid_target');
  });

  test('RFC 6749 3.3: a malformed scope -> invalid_scope', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs(await subject(), [['scope', 'read "quoted"']]));
    assertOAuthError(reply, 400, 'invalid_scope');
  });

  test('RFC 8693 2.2.2: a bad signature -> invalid_grant naming the reason, not the token', async () => {
    const [header, payload] = (await subject('victim')).split('.');
    const otherSignature = (await subject('someone-else')).split('.')[2];
    const tampered = `${header}.${payload}.${otherSignature}`;
    const reply = await postForm(sts.tokenUrl, exchangePairs(tampered));
    const description = assertOAuthError(reply, 400, 'invalid_grant');
    assert.match(description, /signature/);
    assertNoToken(description, tampered);
  });

  test('RFC 8693 2.2.2: a token signed by another key of the same issuer name -> invalid_grant', async () => {
    const forger = createWorkloadIssuer({ issuer: workload.issuer, alg: 'ES256' });
    const forged = await forger.mint({ sub: 'admin', aud: 'dev-sts' });
    const description = assertOAuthError(await postForm(sts.tokenUrl, exchangePairs(forged)), 400, 'invalid_grant');
    assert.match(description, /key/);
    assertNoToken(description, forged);
  });

  test('RFC 7523 3: an expired subject token -> invalid_grant', async () => {
    const expired = await subject('late', -120);
    const description = assertOAuthError(await postForm(sts.tokenUrl, exchangePairs(expired)), 400, 'invalid_grant');
    assert.match(description, /expired/);
    assertNoToken(description, expired);
  });

  test('RFC 7523 3: an unknown issuer -> invalid_grant', async () => {
    const stranger = createWorkloadIssuer({ issuer: 'https://stranger.example' });
    const token = await stranger.mint({ sub: 'x', aud: 'dev-sts' });
    const description = assertOAuthError(await postForm(sts.tokenUrl, exchangePairs(token)), 400, 'invalid_grant');
    assert.match(description, /not trusted/);
    assert.match(description, /stranger\.example/);
    assertNoToken(description, token);
  });

  test("RFC 7523 3: the trusted issuer's audience is enforced", async () => {
    const token = await workload.mint({ sub: 'x', aud: 'some-other-service' });
    const description = assertOAuthError(await postForm(sts.tokenUrl, exchangePairs(token)), 400, 'invalid_grant');
    assert.match(description, /'aud'/);
  });

  test('RFC 8693 3: a JWT under a non-JWT subject_token_type is refused', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs(await subject(), [], 'urn:ietf:params:oauth:token-type:saml2'));
    assertOAuthError(reply, 400, 'invalid_grant');
  });

  test('RFC 8693 4.1: an actor token adds act { sub, iss }', async () => {
    const actor = await workload.mint({ sub: 'system:serviceaccount:ns:gateway', aud: 'dev-sts' });
    const reply = await postForm(
      sts.tokenUrl,
      exchangePairs(await subject('user-1'), [
        ['actor_token', actor],
        ['actor_token_type', JWT],
      ]),
    );
    assert.equal(reply.status, 200, reply.text);
    const payload = decodeJwt(reply.body['access_token'] as string);
    assert.equal(payload.sub, 'user-1');
    assert.deepEqual(payload['act'], { sub: 'system:serviceaccount:ns:gateway', iss: workload.issuer });
  });

  test('RFC 8693 4.1: a prior delegation in the subject token nests under the new actor', async () => {
    const subjectToken = await workload.mint({ sub: 'user-2', aud: 'dev-sts', extra: { act: { sub: 'first-hop' } } });
    const actor = await workload.mint({ sub: 'second-hop', aud: 'dev-sts' });
    const reply = await postJson(sts.tokenUrl, {
      grantType: GRANT,
      subjectToken,
      subjectTokenType: JWT,
      actorToken: actor,
      actorTokenType: JWT,
    });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(decodeJwt(reply.body['access_token'] as string)['act'], {
      sub: 'second-hop',
      iss: workload.issuer,
      act: { sub: 'first-hop' },
    });
  });

  test('RFC 8693 2.1: actor_token without actor_token_type (or the reverse) -> invalid_request; a bad actor -> invalid_grant', async () => {
    const token = await subject();
    const actor = await workload.mint({ sub: 'gw', aud: 'dev-sts' });
    assertOAuthError(await postForm(sts.tokenUrl, exchangePairs(token, [['actor_token', actor]])), 400, 'invalid_request');
    assertOAuthError(await postForm(sts.tokenUrl, exchangePairs(token, [['actor_token_type', JWT]])), 400, 'invalid_request');
    const expiredActor = await workload.mint({ sub: 'gw', aud: 'dev-sts', expiresInSeconds: -60 });
    const description = assertOAuthError(
      await postForm(sts.tokenUrl, exchangePairs(token, [['actor_token', expiredActor], ['actor_token_type', JWT]])),
      400,
      'invalid_grant',
    );
    assert.match(description, /actor token has expired/);
  });
});

describe('JWT subject tokens: remote JWKS and strict RFC 8693 error code', () => {
  let jwksServer: Server;
  let sts: DevSts;
  let workload: WorkloadIssuer;

  before(async () => {
    workload = createWorkloadIssuer({ issuer: 'https://remote-issuer.test', alg: 'ES256' });
    jwksServer = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(workload.jwks));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    const { port } = jwksServer.address() as AddressInfo;
    sts = await startDevSts({
      trustedIssuers: [{ issuer: workload.issuer, jwksUrl: `http://127.0.0.1:${port}/keys` }],
      rejectedTokenError: 'invalid_request',
    });
  });
  after(async () => {
    await sts.close();
    jwksServer.closeAllConnections();
    await new Promise((resolve) => jwksServer.close(resolve));
  });

  test('a trusted issuer with jwksUrl is verified through its remote JWKS', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs(await workload.mint({ sub: 'remote-sub', aud: 'x' }), [['audience', 'a']]));
    assert.equal(reply.status, 200, reply.text);
    assert.equal(decodeJwt(reply.body['access_token'] as string).sub, 'remote-sub');
  });

  test('RFC 8693 2.2.2: with rejectedTokenError invalid_request, an expired subject gets invalid_request', async () => {
    const expired = await workload.mint({ sub: 'remote-sub', aud: 'x', expiresInSeconds: -30 });
    const description = assertOAuthError(await postForm(sts.tokenUrl, exchangePairs(expired)), 400, 'invalid_request');
    assert.match(description, /expired/);
  });
});

describe('request validation and routing', () => {
  let sts: DevSts;
  before(async () => {
    sts = await startDevSts({ maxBodyBytes: 4096 });
  });
  after(() => sts.close());

  test('RFC 8693 2.1: a missing subject_token or subject_token_type -> invalid_request', async () => {
    const noToken = await postForm(sts.tokenUrl, [['grant_type', GRANT], ['subject_token_type', AT]]);
    assert.match(assertOAuthError(noToken, 400, 'invalid_request'), /subject_token/);
    const noType = await postForm(sts.tokenUrl, [['grant_type', GRANT], ['subject_token', 'iamtheeggman']]);
    assert.match(assertOAuthError(noType, 400, 'invalid_request'), /subject_token_type/);
  });

  test('RFC 6749 5.2: a wrong grant_type -> unsupported_grant_type; a missing one -> invalid_request', async () => {
    const wrong = await postForm(sts.tokenUrl, [
      ['grant_type', 'client_credentials'],
      ['subject_token', 'iamtheeggman'],
      ['subject_token_type', AT],
    ]);
    assertOAuthError(wrong, 400, 'unsupported_grant_type');
    const missing = await postForm(sts.tokenUrl, [['subject_token', 'iamtheeggman'], ['subject_token_type', AT]]);
    assertOAuthError(missing, 400, 'invalid_request');
  });

  test('malformed JSON -> invalid_request without quoting the body', async () => {
    const reply = await send(sts.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"subject_token": "iamtheeggman-secret-value", oops',
    });
    const description = assertOAuthError(reply, 400, 'invalid_request');
    assertNoToken(description, 'iamtheeggman-secret-value');
    assertOAuthError(await postJson(sts.tokenUrl, ['not', 'an', 'object']), 400, 'invalid_request');
    assertOAuthError(await postJson(sts.tokenUrl, { grant_type: GRANT, subject_token: 42, subject_token_type: AT }), 400, 'invalid_request');
  });

  test('an unsupported content type -> invalid_request', async () => {
    for (const contentType of ['text/plain', 'multipart/form-data; boundary=x', `${FORM}; charset=ISO-8859-1`]) {
      const reply = await send(sts.tokenUrl, { method: 'POST', headers: { 'content-type': contentType }, body: 'grant_type=x' });
      assertOAuthError(reply, 400, 'invalid_request');
    }
  });

  test('RFC 6749 3.2: a repeated single-valued parameter -> invalid_request (also camelCase + snake_case)', async () => {
    const form = await postForm(sts.tokenUrl, [...exchangePairs('iamtheeggman', [], AT), ['subject_token', 'iamtheeggman']]);
    assertOAuthError(form, 400, 'invalid_request');
    const json = await postJson(sts.tokenUrl, { grant_type: GRANT, subjectToken: 'iamtheeggman', subject_token: 'x', subject_token_type: AT });
    assertOAuthError(json, 400, 'invalid_request');
  });

  test('RFC 6749 3.1: unknown parameters are ignored', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [['colour', 'blue']], AT));
    assert.equal(reply.status, 200, reply.text);
  });

  test('a body over maxBodyBytes -> 413 invalid_request', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [['padding', 'x'.repeat(10_000)]], AT));
    assertOAuthError(reply, 413, 'invalid_request');
  });

  test('RFC 6749 3.2: GET on the token endpoint -> 405 with Allow: POST', async () => {
    const reply = await send(sts.tokenUrl, { method: 'GET' });
    assert.equal(reply.status, 405);
    assert.equal(reply.headers.get('allow'), 'POST');
    assert.equal(reply.body['error'], 'invalid_request');
  });

  test('unknown paths -> 404 JSON; /healthz -> 200', async () => {
    const missing = await send(`${sts.url}/nope`, { method: 'GET' });
    assert.equal(missing.status, 404);
    assert.equal(missing.body['error'], 'not_found');
    const health = await send(`${sts.url}/healthz`, { method: 'GET' });
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: 'ok' });
  });

  test('RFC 7517 5: the JWKS (and its /jwks alias) holds one public signing key', async () => {
    const wellKnown = await send(sts.jwksUrl, { method: 'GET' });
    const alias = await send(`${sts.url}/jwks`, { method: 'GET' });
    assert.equal(wellKnown.status, 200);
    assert.deepEqual(wellKnown.body, alias.body);
    assert.deepEqual(wellKnown.body, sts.publicJwks);
    const keys = wellKnown.body['keys'] as Record<string, unknown>[];
    assert.equal(keys.length, 1);
    assert.equal(keys[0]?.['kty'], 'EC');
    assert.equal(keys[0]?.['alg'], 'ES256');
    assert.equal(typeof keys[0]?.['kid'], 'string');
    assert.equal(keys[0]?.['d'], undefined, 'no private member');
  });
});

describe('client authentication (RFC 6749 2.3)', () => {
  const basicClient = { clientId: 'a b:c', clientSecret: 'p@ss:w+rd/é%' };
  const postClient = { clientId: 'poster', clientSecret: 's3cret' };
  let sts: DevSts;
  let workload: WorkloadIssuer;

  before(async () => {
    workload = createWorkloadIssuer();
    sts = await startDevSts({
      clients: [basicClient, postClient],
      trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }],
    });
  });
  after(() => sts.close());

  test('RFC 6749 2.3.1: client_secret_basic with form-urlencoded id and secret is accepted', async () => {
    assert.equal(formEncode(basicClient.clientId), 'a+b%3Ac');
    const reply = await postForm(sts.tokenUrl, exchangePairs(await workload.mint({ sub: 's', aud: 'x' })), {
      authorization: basic(basicClient.clientId, basicClient.clientSecret),
    });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(decodeJwt(reply.body['access_token'] as string)['client_id'], 'a b:c');
  });

  test('RFC 6749 2.3.1: credentials that skip the form-encoding step are refused', async () => {
    const raw = `Basic ${Buffer.from(`${basicClient.clientId}:${basicClient.clientSecret}`).toString('base64')}`;
    const reply = await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [], AT), { authorization: raw });
    assertOAuthError(reply, 401, 'invalid_client');
  });

  test('RFC 6749 5.2: a wrong secret -> 401 invalid_client with a Basic challenge', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [], AT), {
      authorization: basic(basicClient.clientId, 'wrong'),
    });
    const description = assertOAuthError(reply, 401, 'invalid_client');
    assert.equal(reply.headers.get('www-authenticate'), 'Basic realm="dev-sts"');
    assert.ok(!description.includes('wrong'));
  });

  test('RFC 6749 5.2: no client authentication at all -> 401 invalid_client', async () => {
    const reply = await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [], AT));
    assertOAuthError(reply, 401, 'invalid_client');
  });

  test('RFC 6749 2.3.1: client_secret_post in a form body and in camelCase JSON', async () => {
    const form = await postForm(
      sts.tokenUrl,
      exchangePairs(await workload.mint({ sub: 's', aud: 'x' }), [
        ['client_id', postClient.clientId],
        ['client_secret', postClient.clientSecret],
      ]),
    );
    assert.equal(form.status, 200, form.text);
    assert.equal(decodeJwt(form.body['access_token'] as string)['client_id'], 'poster');

    const json = await postJson(sts.tokenUrl, {
      grantType: GRANT,
      subjectToken: 'iamtheeggman',
      subjectTokenType: AT,
      clientId: postClient.clientId,
      clientSecret: postClient.clientSecret,
    });
    assert.equal(json.status, 200, json.text);
    const wrong = await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [['client_id', 'poster'], ['client_secret', 'nope']], AT));
    assertOAuthError(wrong, 401, 'invalid_client');
  });

  test('RFC 6749 2.3: two authentication methods in one request -> invalid_request', async () => {
    const reply = await postForm(
      sts.tokenUrl,
      exchangePairs('iamtheeggman', [['client_id', 'poster'], ['client_secret', 's3cret']], AT),
      { authorization: basic('poster', 's3cret') },
    );
    assertOAuthError(reply, 400, 'invalid_request');
  });
});

describe('counters and logs', () => {
  test('stats count token requests, issued exchanges and errors exactly', async () => {
    const sts = await startDevSts();
    try {
      assert.deepEqual({ ...sts.stats }, { tokenRequests: 0, exchangesIssued: 0, errors: 0 });
      for (let i = 0; i < 3; i++) assert.equal((await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [], AT))).status, 200);
      assert.equal((await postForm(sts.tokenUrl, exchangePairs('wrong', [], AT))).status, 400);
      assert.equal((await send(sts.tokenUrl, { method: 'GET' })).status, 405);
      assert.equal((await send(`${sts.url}/healthz`, { method: 'GET' })).status, 200);
      assert.deepEqual({ ...sts.stats }, { tokenRequests: 5, exchangesIssued: 3, errors: 2 });

      const replies = await Promise.all(
        Array.from({ length: 50 }, () => postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [], AT))),
      );
      assert.ok(replies.every((r) => r.status === 200));
      assert.deepEqual({ ...sts.stats }, { tokenRequests: 55, exchangesIssued: 53, errors: 2 });
    } finally {
      await sts.close();
    }
  });

  test('logs never contain subject tokens, issued tokens or client secrets', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    });
    const workload = createWorkloadIssuer();
    const sts = await startDevSts({
      logger: pino({ level: 'trace' }, sink),
      clients: [{ clientId: 'logged-client', clientSecret: 'do-not-log-this-secret' }],
      trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }],
    });
    try {
      const subjectJwt = await workload.mint({ sub: 'logged-sub', aud: 'x' });
      const auth = { authorization: basic('logged-client', 'do-not-log-this-secret') };
      const ok = await postForm(sts.tokenUrl, exchangePairs(subjectJwt), auth);
      assert.equal(ok.status, 200);
      const issued = ok.body['access_token'] as string;
      assert.equal((await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [], AT), auth)).status, 200);
      const expired = await workload.mint({ sub: 'logged-sub', aud: 'x', expiresInSeconds: -60 });
      assert.equal((await postForm(sts.tokenUrl, exchangePairs(expired), auth)).status, 400);
      assert.equal((await postForm(sts.tokenUrl, exchangePairs('iamtheeggman', [], AT), { authorization: basic('logged-client', 'bad-secret-value') })).status, 401);

      const log = lines.join('');
      assert.match(log, /token issued/);
      assert.match(log, /logged-sub/, 'identities are logged');
      for (const secret of [subjectJwt, issued, expired, 'iamtheeggman', 'iamthewalrus', 'do-not-log-this-secret', 'bad-secret-value', auth.authorization]) {
        assert.ok(!log.includes(secret), 'a secret reached the log');
        for (const part of secret.split('.')) if (part.length > 16) assert.ok(!log.includes(part), 'part of a token reached the log');
      }
    } finally {
      await sts.close();
    }
  });
});

describe('mTLS seam (RFC 8705 3.1)', () => {
  test('a confirmation passed to the exchanger becomes the cnf claim', async () => {
    const workload = createWorkloadIssuer();
    const signer = await createTokenSigner();
    const exchanger = createExchanger({
      issuer: 'https://sts.test',
      staticRules: [],
      verifier: createJwtVerifier([{ issuer: workload.issuer, jwks: workload.jwks }]),
      signer,
      tokenLifetimeSeconds: 60,
      rejectedTokenError: 'invalid_grant',
    });
    const request = parseExchangeRequest(parseFormParams(new URLSearchParams(exchangePairs(await workload.mint({ sub: 'alice', aud: 'x' }))).toString()));
    const thumbprint = 'SS1BLJC30XR_Alg9A9v1LgCf3hE91FS9XeVyveZZXvw';
    const issued = await exchanger.exchange(request, { confirmation: { 'x5t#S256': thumbprint } });
    assert.deepEqual(decodeJwt(issued.token)['cnf'], { 'x5t#S256': thumbprint });
    const withoutCnf = await exchanger.exchange(request);
    assert.equal(decodeJwt(withoutCnf.token)['cnf'], undefined);
  });
});

describe('workload issuer', () => {
  test('mints RS256 projected-token-like JWTs with kid; negative lifetimes are already expired', async () => {
    const issuer = createWorkloadIssuer();
    assert.equal(issuer.issuer, 'https://kubernetes.default.svc.cluster.local');
    const token = await issuer.mint({ sub: 'system:serviceaccount:ns:sa', aud: ['sts'], extra: { 'kubernetes.io': { namespace: 'ns' }, iss: 'ignored' } });
    const header = decodeProtectedHeader(token);
    assert.equal(header.alg, 'RS256');
    assert.equal(header.kid, issuer.jwks.keys[0]?.kid);
    const claims = decodeJwt(token);
    assert.equal(claims.iss, issuer.issuer, 'extra cannot override iss');
    assert.deepEqual(claims.aud, ['sts']);
    assert.deepEqual(claims['kubernetes.io'], { namespace: 'ns' });

    const expired = decodeJwt(await issuer.mint({ sub: 's', aud: 'a', expiresInSeconds: -10 }));
    const exp = expired.exp ?? Number.NaN;
    assert.ok(exp < Date.now() / 1000, 'already expired');
    assert.ok((expired.iat ?? Number.NaN) < exp, 'issued before it expired');
    assert.equal(decodeProtectedHeader(await createWorkloadIssuer({ alg: 'ES256' }).mint({ sub: 's', aud: 'a' })).alg, 'ES256');
  });
});

describe('dev-sts command', () => {
  const capture = (): { text: () => string; write: (chunk: string) => boolean } => {
    let out = '';
    return { text: () => out, write: (chunk: string) => ((out += chunk), true) };
  };
  const silent = pino({ level: 'silent' });

  test('--help prints usage and returns 0', async () => {
    const stdout = capture();
    assert.equal(await runDevStsCommand(['--help'], { stdout, stderr: capture(), logger: silent }), 0);
    assert.match(stdout.text(), /--trust-jwks/);
  });

  test('bad flags return 2 with a message naming the flag', async () => {
    const cases: [string[], RegExp][] = [
      [['--bogus'], /--bogus/],
      [['--token-lifetime', 'soon'], /--token-lifetime/],
      [['--listen', 'localhost'], /--listen/],
      [['--static', 'no-equals-sign'], /--static/],
      [['--client', 'no-colon'], /--client/],
      [['--trust-issuer', 'https://x'], /--trust-jwks/],
      [['--trust-issuer', 'https://x', '--trust-jwks', '/nonexistent/jwks.json'], /--trust-jwks/],
    ];
    for (const [argv, flag] of cases) {
      const stderr = capture();
      assert.equal(await runDevStsCommand(argv, { stdout: capture(), stderr, logger: silent }), 2, argv.join(' '));
      assert.match(stderr.text(), flag);
    }
  });

  test('serves the configured static rule, trust and clients until stopped, then returns 0', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'devsts-'));
    const workload = createWorkloadIssuer({ issuer: 'https://cli-issuer.test' });
    const jwksFile = join(dir, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify(workload.jwks));
    const stdout = capture();
    const stop = new AbortController();
    const exit = runDevStsCommand(
      ['--listen', '127.0.0.1:0', '--static', 'foo=bar', '--client', 'cli:pw', '--token-lifetime', '120',
        '--trust-issuer', workload.issuer, '--trust-jwks', jwksFile],
      { stdout, stderr: capture(), signal: stop.signal, logger: silent },
    );
    try {
      const printed = await eventually(() => /token endpoint: (\S+)/.exec(stdout.text())?.[1], { timeoutMs: 2000 }).catch(() => undefined);
      assert.ok(printed, stdout.text());
      const tokenUrl: string = printed;
      const auth = { authorization: basic('cli', 'pw') };
      const stat = await postForm(tokenUrl, exchangePairs('foo', [], AT), auth);
      assert.equal(stat.status, 200, stat.text);
      assert.equal(stat.body['access_token'], 'bar');
      // --static replaced the default rule.
      assertOAuthError(await postForm(tokenUrl, exchangePairs('iamtheeggman', [], AT), auth), 400, 'invalid_grant');
      const jwt = await postForm(tokenUrl, exchangePairs(await workload.mint({ sub: 'cli-sub', aud: 'x' })), auth);
      assert.equal(jwt.status, 200, jwt.text);
      assert.equal(jwt.body['expires_in'], 120);
      assert.equal(decodeJwt(jwt.body['access_token'] as string).sub, 'cli-sub');
    } finally {
      stop.abort();
      assert.equal(await exit, 0);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * Issue 16 against an authorization server no one here wrote: oidc-provider with its DPoP
 * feature, issuing `cnf.jkt`-bound JWT access tokens, and a resource server that checks
 * tokens and proofs with jose alone. Through the sidecar (reverse proxy, and curl through
 * http_proxy): 200. A captured token and proof replayed by another client: refused. The
 * token with a proof from another key: refused. Nonces demanded by the resource server and
 * by the STS: handled.
 */
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import { request } from 'undici';
import { createDpopProof, generateDpopKey } from '../src/dpop/index.js';
import { startHarness, type SidecarHarness } from './helpers/harness.js';
import { eventually } from './helpers/eventually.js';
import {
  ACCESS_TOKEN_TYPE,
  CLIENT,
  startOidcProvider,
  startResourceServer,
  SUBJECT_TOKEN,
  type AuthorizationServer,
  type ResourceServer,
} from './helpers/dpop-servers.js';

const run = promisify(execFile);

describe('DPoP with oidc-provider and a jose resource server (RFC 9449)', () => {
  let as: AuthorizationServer;
  let rs: ResourceServer;
  let h: SidecarHarness;
  let routeUrl: string;

  before(async () => {
    rs = await startResourceServer(() => as);
    as = await startOidcProvider(rs.resource);
    h = await startHarness({
      subjectToken: { value: SUBJECT_TOKEN, type: ACCESS_TOKEN_TYPE },
      sts: { url: as.tokenUrl, clientAuth: { method: 'client_secret_basic', clientId: CLIENT.id, clientSecret: { value: CLIENT.secret } } },
      routes: [
        { name: 'api', host: 'api.internal', listen: '127.0.0.1:0', upstream: rs.url, resource: rs.resource, binding: 'dpop' },
      ],
    });
    routeUrl = h.sidecar.routeUrls['api']!;
  });
  after(async () => {
    await h?.close();
    await Promise.all([rs?.close(), as?.close()]);
  });

  it('client_credentials straight to oidc-provider: a proof made here is accepted and the token is bound to its key', async () => {
    const key = await generateDpopKey();
    const body = new URLSearchParams({ grant_type: 'client_credentials', scope: 'api', resource: rs.resource });
    const basic = `Basic ${Buffer.from(`${CLIENT.id}:${CLIENT.secret}`).toString('base64')}`;
    const res = await request(as.tokenUrl, {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded', dpop: await createDpopProof(key, { method: 'POST', url: as.tokenUrl }) },
      body: body.toString(),
    });
    const reply = (await res.body.json()) as Record<string, string>;
    assert.equal(res.statusCode, 200, JSON.stringify(reply));
    assert.equal(reply['token_type'], 'DPoP');
    assert.deepEqual(decodeJwt(reply['access_token']!)['cnf'], { jkt: key.thumbprint });
  });

  it('token exchange through the sidecar: Authorization: DPoP with a fresh proof per request, 200 from the resource server', async () => {
    for (const path of ['/items?page=1', '/items/2']) {
      const res = await request(`${routeUrl}${path}`);
      assert.equal(res.statusCode, 200, await res.body.text());
    }
    const served = rs.seen.filter((s) => s.status === 200);
    assert.ok(served.length >= 2);
    const [a, b] = served.slice(-2);
    assert.match(a!.authorization!, /^DPoP /);
    assert.equal(a!.authorization, b!.authorization, 'the cached token is reused');
    assert.notEqual(a!.dpop, b!.dpop, 'each request has its own proof');
    assert.ok(as.requests.some((r) => r.dpop && r.status === 200), 'the exchange carried a proof');
  });

  it('a captured token and proof replayed by another client are refused', async () => {
    await request(`${routeUrl}/once`).then((r) => r.body.text());
    const captured = rs.seen.filter((s) => s.status === 200).at(-1)!;
    const replay = await request(`${rs.url}/once`, { headers: { authorization: captured.authorization!, dpop: captured.dpop! } });
    await replay.body.text();
    assert.equal(replay.statusCode, 401);
    assert.equal(rs.seen.at(-1)!.reason, 'replayed jti');
  });

  it('the token with a proof from another key is refused', async () => {
    const captured = rs.seen.filter((s) => s.status === 200).at(-1)!;
    const token = captured.authorization!.slice('DPoP '.length);
    const thief = await generateDpopKey();
    const proof = await createDpopProof(thief, { method: 'GET', url: `${rs.url}/stolen`, accessToken: token });
    const res = await request(`${rs.url}/stolen`, { headers: { authorization: captured.authorization!, dpop: proof } });
    await res.body.text();
    assert.equal(res.statusCode, 401);
    assert.equal(rs.seen.at(-1)!.reason, 'key is not cnf.jkt');
  });

  it('a nonce demanded by the resource server: the GET is retried once with it, and later requests carry it at once', async () => {
    rs.demandNonce = true;
    try {
      const before = rs.seen.length;
      const res = await request(`${routeUrl}/nonce`);
      assert.equal(res.statusCode, 200, await res.body.text());
      assert.deepEqual(rs.seen.slice(before).map((s) => s.reason), ['nonce', '']);
      const next = await request(`${routeUrl}/nonce-again`);
      assert.equal(next.statusCode, 200, await next.body.text());
      assert.equal(rs.seen.length, before + 3, 'no second nonce round trip');
    } finally {
      rs.demandNonce = false;
    }
  });

  it('through http_proxy (curl, absolute-form): the proof names the upstream URL and the resource server accepts it', async () => {
    const { stdout } = await run('curl', ['-q', '-sS', '-w', '\n%{http_code}', 'http://api.internal/via-proxy?x=1'], { env: { ...process.env, http_proxy: h.sidecar.proxyUrl } });
    assert.equal(stdout.split('\n').at(-1), '200', stdout);
    assert.equal(rs.seen.at(-1)!.status, 200);
  });

  it('a nonce demanded by the STS: use_dpop_nonce is answered by one retry with the nonce', async () => {
    as.demandNonce = true;
    try {
      const before = as.requests.length;
      // A second sidecar: its first exchange meets the nonce demand.
      const h2 = await startHarness({
        subjectToken: { value: SUBJECT_TOKEN, type: ACCESS_TOKEN_TYPE },
        sts: { url: as.tokenUrl, clientAuth: { method: 'client_secret_basic', clientId: CLIENT.id, clientSecret: { value: CLIENT.secret } } },
        routes: [{ name: 'api', listen: '127.0.0.1:0', upstream: rs.url, resource: rs.resource, binding: 'dpop' }],
      });
      try {
        const res = await request(`${h2.sidecar.routeUrls['api']}/sts-nonce`);
        assert.equal(res.statusCode, 200, await res.body.text());
        await eventually(() => as.requests.length >= before + 2);
        assert.deepEqual(as.requests.slice(before, before + 2).map((r) => r.status), [400, 200]);
      } finally {
        await h2.close();
      }
    } finally {
      as.demandNonce = false;
    }
  });
});

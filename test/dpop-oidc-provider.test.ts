/**
 * Issue 16 against an authorization server no one here wrote: oidc-provider with its DPoP
 * feature, issuing `cnf.jkt`-bound JWT access tokens, and a resource server that checks
 * tokens and proofs with jose alone. Through the sidecar (reverse proxy, and curl through
 * http_proxy): 200. A captured token and proof replayed by another client: refused. The
 * token with a proof from another key: refused. Nonces demanded by the resource server and
 * by the STS: handled. The same token over an HTTP/2 resource server and a gRPC call.
 */
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, createRemoteJWKSet, decodeJwt, EmbeddedJWK, jwtVerify } from 'jose';
import { request } from 'undici';
import { createDpopProof, generateDpopKey } from '../src/dpop/index.js';
import { startHarness, type SidecarHarness } from './helpers/harness.js';
import { eventually } from './helpers/eventually.js';
import { createEchoClient } from './helpers/grpc-client.js';
import { startGrpcServer, type TestGrpcServer } from './helpers/grpc-server.js';
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
  let h2rs: ResourceServer;
  let grpc: TestGrpcServer;
  let h: SidecarHarness;
  let routeUrl: string;

  before(async () => {
    rs = await startResourceServer(() => as);
    as = await startOidcProvider(rs.resource);
    // Tokens for rs.resource, shown to an HTTP/2 resource server and a gRPC server too.
    h2rs = await startResourceServer(() => as, { protocol: 'h2c', audience: rs.resource });
    grpc = await startGrpcServer({ authorization: null });
    h = await startHarness({
      subjectToken: { value: SUBJECT_TOKEN, type: ACCESS_TOKEN_TYPE },
      sts: { url: as.tokenUrl, clientAuth: { method: 'client_secret_basic', clientId: CLIENT.id, clientSecret: { value: CLIENT.secret } } },
      routes: [
        { name: 'api', host: 'api.internal', listen: '127.0.0.1:0', upstream: rs.url, resource: rs.resource, binding: 'dpop' },
        { name: 'h2', listen: '127.0.0.1:0', upstream: h2rs.url, upstreamProtocol: 'h2c', resource: rs.resource, binding: 'dpop' },
        { name: 'grpc', listen: '127.0.0.1:0', upstream: `http://${grpc.address}`, upstreamProtocol: 'h2c', resource: rs.resource, binding: 'dpop' },
      ],
    });
    routeUrl = h.sidecar.routeUrls['api']!;
  });
  after(async () => {
    await h?.close();
    await Promise.all([rs?.close(), h2rs?.close(), grpc?.close(), as?.close()]);
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

  it('an HTTP/2 (h2c) resource server accepts the sidecar proof', async () => {
    const res = await request(`${h.sidecar.routeUrls['h2']}/over-h2?x=1`);
    assert.equal(res.statusCode, 200, await res.body.text());
    assert.equal(h2rs.seen.at(-1)!.status, 200);
  });

  it('gRPC: the call carries the oidc-provider token as DPoP and a proof jose verifies (POST, the method path, ath, cnf.jkt)', async () => {
    const client = createEchoClient(new URL(h.sidecar.routeUrls['grpc']!).host);
    try {
      await client.unary({ payload: Buffer.from('hi') } as never);
    } finally {
      client.close();
    }
    const metadata = grpc.calls.at(-1)!.metadata;
    const token = metadata['authorization']!.replace(/^DPoP /, '');
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(as.jwksUrl)), { issuer: as.issuer, audience: rs.resource });
    const proof = await jwtVerify(metadata['dpop']!, EmbeddedJWK, { typ: 'dpop+jwt' });
    assert.equal(proof.payload['htm'], 'POST');
    assert.equal(proof.payload['htu'], `http://${grpc.address}/stssidecar.test.Echo/Unary`);
    assert.equal(proof.payload['ath'], createHash('sha256').update(token).digest('base64url'));
    assert.equal(await calculateJwkThumbprint(proof.protectedHeader.jwk!), (payload['cnf'] as { jkt: string }).jkt);
  });

  it('a POST meeting a nonce demand is not sent twice: the 401 reaches the app, the next request carries the nonce', async () => {
    rs.demandNonce = true;
    rs.rotateNonce();
    try {
      const before = rs.seen.length;
      const post = await request(`${routeUrl}/orders`, { method: 'POST', body: 'an order' });
      await post.body.text();
      assert.equal(post.statusCode, 401);
      const get = await request(`${routeUrl}/orders`);
      assert.equal(get.statusCode, 200, await get.body.text());
      assert.deepEqual(rs.seen.slice(before).map((s) => s.reason), ['nonce', '']);
    } finally {
      rs.demandNonce = false;
    }
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

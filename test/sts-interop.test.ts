/**
 * The sidecar against the reference STS in each wire format and client-authentication
 * method it supports, end to end: app -> sidecar -> STS -> upstream that verifies the token.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { request } from 'undici';
import { createWorkloadIssuer, startDevSts } from '../src/devsts/index.js';
import { startDemoUpstream } from '../src/demo/upstream.js';
import { closeAfter, startHarness, startUpstream, TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT } from './helpers/harness.js';

const seedSubject = { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS };

async function status(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url);
  const text = await res.body.text();
  return { status: res.statusCode, body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

describe('sidecar <-> reference STS', () => {
  it('RFC 8693 2.1 form encoding with a JWT subject: the upstream verifies the issued JWT (iss, aud, scope)', async (t) => {
    const own = closeAfter(t);
    const issuer = createWorkloadIssuer({ issuer: 'https://kubernetes.default.svc' });
    const sts = own(await startDevSts({ trustedIssuers: [{ issuer: issuer.issuer, jwks: issuer.jwks }] }));
    const upstream = own(await startDemoUpstream({ jwksUrl: sts.jwksUrl, issuer: sts.issuer, audience: 'https://orders.internal' }));
    const subject = await issuer.mint({ sub: 'system:serviceaccount:shop:orders', aud: 'sts', expiresInSeconds: 600 });
    const h = own(
      await startHarness({
        subjectToken: { value: subject, type: TOKEN_TYPE_JWT },
        sts: { url: sts.tokenUrl },
        routes: [{ name: 'orders', listen: '127.0.0.1:0', upstream: upstream.url, audience: 'https://orders.internal', scope: ['orders.read', 'orders.write'] }],
      }),
    );
    const r = await status(`${h.sidecar.routeUrls['orders']}/orders`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body['token'], {
      iss: sts.issuer,
      sub: 'system:serviceaccount:shop:orders',
      aud: 'https://orders.internal',
      scope: 'orders.read orders.write',
      exp: (r.body['token'] as { exp: number }).exp,
    });
  });

  for (const jsonFieldNames of ['camelCase', 'snake_case'] as const) {
    it(`JSON encoding (${jsonFieldNames}) with Google options at /v1/token`, async (t) => {
      const own = closeAfter(t);
      const sts = own(await startDevSts());
      const upstream = own(await startUpstream());
      const h = own(
        await startHarness({
          subjectToken: seedSubject,
          sts: { url: `${sts.url}/v1/token`, encoding: 'json', jsonFieldNames },
          routes: [{ name: 'g', listen: '127.0.0.1:0', upstream: upstream.url, audience: '//iam.googleapis.com/pool', options: { userProject: 'demo' } }],
        }),
      );
      assert.equal((await status(`${h.sidecar.routeUrls['g']}/`)).status, 200);
      assert.equal(upstream.requests.at(-1)!.headers.authorization, 'Bearer iamthewalrus');
      assert.equal(sts.stats.exchangesIssued, 1);
    });
  }

  for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
    it(`RFC 6749 2.3.1 ${method}: accepted with the right secret, a 503 with stsError invalid_client otherwise`, async (t) => {
      const own = closeAfter(t);
      // Characters that break clients which skip the form-encoding step.
      const client = { clientId: 'sidecar id:1', clientSecret: 'p@ss:w+rd/é%' };
      const sts = own(await startDevSts({ clients: [client] }));
      const upstream = own(await startUpstream());
      const start = (secret: string) =>
        startHarness(
          {
            subjectToken: seedSubject,
            sts: { url: sts.tokenUrl, clientAuth: { method, clientId: client.clientId, clientSecret: { value: secret } } },
            routes: [{ name: 'r', listen: '127.0.0.1:0', upstream: upstream.url }],
          },
          { waitForTokens: true },
        );
      const good = own(await start(client.clientSecret));
      assert.equal((await status(`${good.sidecar.routeUrls['r']}/`)).status, 200);
      const bad = own(await start('wrong-secret'));
      const refused = await status(`${bad.sidecar.routeUrls['r']}/`);
      assert.equal(refused.status, 503);
      assert.equal(refused.body['stsError'], 'invalid_client');
      assert.ok(!JSON.stringify(refused.body).includes('wrong-secret'));
    });
  }

  it('RFC 8693 4.1: an actor token is sent and shows up as the act claim', async (t) => {
    const own = closeAfter(t);
    const issuer = createWorkloadIssuer({ issuer: 'https://kubernetes.default.svc' });
    const sts = own(await startDevSts({ trustedIssuers: [{ issuer: issuer.issuer, jwks: issuer.jwks }] }));
    const upstream = own(await startUpstream());
    const h = own(
      await startHarness({
        subjectToken: { value: await issuer.mint({ sub: 'user-42', aud: 'sts', expiresInSeconds: 600 }), type: TOKEN_TYPE_JWT },
        sts: {
          url: sts.tokenUrl,
          actorToken: { value: await issuer.mint({ sub: 'system:serviceaccount:shop:gateway', aud: 'sts', expiresInSeconds: 600 }), type: TOKEN_TYPE_JWT },
        },
        routes: [{ name: 'r', listen: '127.0.0.1:0', upstream: upstream.url, audience: 'orders' }],
      }),
    );
    assert.equal((await status(`${h.sidecar.routeUrls['r']}/`)).status, 200);
    const claims = decodeJwt(String(upstream.requests.at(-1)!.headers.authorization).replace(/^Bearer /, ''));
    assert.equal(claims.sub, 'user-42');
    assert.equal((claims['act'] as { sub: string }).sub, 'system:serviceaccount:shop:gateway');
  });
});

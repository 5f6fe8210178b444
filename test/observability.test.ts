/**
 * Logs, metrics and health endpoints: useful, and never carrying a token.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { createWorkloadIssuer } from '../src/devsts/index.js';
import { eventually } from './helpers/eventually.js';
import { issueToken, oauthError, startFakeSts } from './helpers/fake-sts.js';
import { parsedLogs, startHarness, startUpstream, TOKEN_TYPE_JWT } from './helpers/harness.js';

const ISSUED = 'issued-access-token-0123456789abcdef';

/** An STS that issues for audience "good" and, for "bad", echoes the subject token back in its error. */
const startEchoingSts = () =>
  startFakeSts({
    lifetimeSeconds: 600,
    makeToken: () => ISSUED,
    answer: (res, request, sts) =>
      request.form.get('audience') === 'good'
        ? issueToken(res, request, sts)
        : oauthError('invalid_target', `audience refused for subject ${request.form.get('subject_token')}`)(res, request, sts),
  });

describe('observability', () => {
  it('no subject token, issued token or Authorization value appears in logs at debug level, metrics or admin pages', async () => {
    const issuer = await createWorkloadIssuer({ issuer: 'https://issuer.test' });
    const subject = await issuer.mint({ sub: 'workload', aud: 'sts', expiresInSeconds: 600 });
    const sts = await startEchoingSts();
    const upstream = await startUpstream((req, res) => {
      // Reject the first request so the 401 path (and its logging) runs too.
      res.writeHead(req.url === '/reject' && req.headers['x-attempt'] === undefined ? 401 : 200);
      res.end();
    });
    const h = await startHarness(
      {
        log: { level: 'trace' },
        subjectToken: { value: subject, type: TOKEN_TYPE_JWT },
        sts: { url: sts.tokenUrl },
        routes: [
          { name: 'good', host: 'good.internal', upstream: upstream.url, audience: 'good' },
          { name: 'bad', host: 'bad.internal', upstream: upstream.url, audience: 'bad' },
        ],
      },
      { waitForTokens: true },
    );
    try {
      const send = async (host: string, path: string) => {
        const res = await request(`${h.sidecar.proxyUrl}${path}`, {
          headers: { host, authorization: 'Bearer app-secret-credential-42', 'proxy-authorization': 'Basic cHJveHk6c2VjcmV0' },
        });
        return { status: res.statusCode, text: await res.body.text() };
      };
      assert.equal((await send('good.internal', '/ok?token=in-query')).status, 200);
      assert.equal((await send('good.internal', '/reject')).status, 401);
      const refused = await send('bad.internal', '/x');
      assert.equal(refused.status, 503);
      assert.ok(!refused.text.includes(subject), 'the 503 body echoed the subject token');
      assert.match(refused.text, /\[Redacted\]/);

      const metrics = await (await request(`${h.sidecar.adminUrl}/metrics`)).body.text();
      const ready = await (await request(`${h.sidecar.adminUrl}/readyz`)).body.text();
      // pino may write the last lines after the answers went out.
      await eventually(() => parsedLogs(h.logs).some((l) => l['msg'] === 'proxied') && parsedLogs(h.logs).some((l) => l['msg'] === 'token exchange failed'));
      const everything = [h.logs.join(''), metrics, ready, refused.text].join('\n');

      // The logs are really at debug level and really describe what happened...
      const lines = parsedLogs(h.logs);
      assert.ok(lines.some((l) => l['msg'] === 'proxied' && l['level'] === 'debug'));
      assert.ok(lines.some((l) => l['msg'] === 'token exchange failed'));
      // ...and carry none of the secrets.
      for (const secret of [subject, ISSUED, 'app-secret-credential-42', 'cHJveHk6c2VjcmV0', subject.split('.')[1]!]) {
        assert.ok(!everything.includes(secret), `a secret leaked: ${secret.slice(0, 12)}...`);
      }
      assert.ok(!/Bearer [A-Za-z0-9]/.test(everything), 'an Authorization value leaked');
    } finally {
      await h.close();
      await upstream.close();
      await sts.close();
    }
  });

  it('/metrics exports the documented series; /healthz and /readyz answer', async () => {
    const sts = await startEchoingSts();
    const upstream = await startUpstream();
    const h = await startHarness({
      subjectToken: { value: 'ambient-credential', type: 'urn:ietf:params:oauth:token-type:access_token' },
      sts: { url: sts.tokenUrl },
      routes: [
        { name: 'good', host: 'good.internal', upstream: upstream.url, audience: 'good' },
        { name: 'lazy', host: 'lazy.internal', upstream: upstream.url, audience: 'bad', lazy: true },
      ],
    });
    try {
      const res = await request(`${h.sidecar.proxyUrl}/`, { headers: { host: 'good.internal' } });
      await res.body.dump();
      const unmatched = await request(`${h.sidecar.proxyUrl}/`, { headers: { host: 'nowhere' } });
      await unmatched.body.dump();

      const metrics = await (await request(`${h.sidecar.adminUrl}/metrics`)).body.text();
      for (const series of [
        'sts_sidecar_sts_exchanges_total{route="good",result="success",binding="none"} 1',
        'sts_sidecar_sts_exchange_duration_seconds_count{route="good"} 1',
        'sts_sidecar_token_cache_hits_total{route="good"} 1',
        'sts_sidecar_proxy_requests_total{route="good",status_class="2xx",protocol="h1",grpc_status="none",binding="none"} 1',
        'sts_sidecar_proxy_requests_total{route="unmatched",status_class="4xx",protocol="h1",grpc_status="none",binding="none"} 1',
        'sts_sidecar_proxy_request_duration_seconds_count{route="good"} 1',
        'sts_sidecar_token_valid{route="good"} 1',
        'sts_sidecar_token_valid{route="lazy"} 0',
        'process_resident_memory_bytes',
        'nodejs_eventloop_lag_seconds',
      ]) {
        assert.ok(metrics.includes(series), `missing ${series}`);
      }
      const expiry = /sts_sidecar_token_expiry_seconds\{route="good"\} ([\d.]+)/.exec(metrics);
      assert.ok(expiry && Number(expiry[1]) > 590 && Number(expiry[1]) <= 600);
      // Never a path or a request's Host as a label value.
      assert.ok(!metrics.includes('nowhere'));

      const health = await request(`${h.sidecar.adminUrl}/healthz`);
      assert.equal(health.statusCode, 200);
      await health.body.dump();
      // The lazy route has no token yet but does not gate readiness.
      const ready = await request(`${h.sidecar.adminUrl}/readyz`);
      assert.equal(ready.statusCode, 200);
      const body = (await ready.body.json()) as { ready: boolean; routes: Array<{ route: string; valid: boolean }> };
      assert.equal(body.ready, true);
      assert.deepEqual(body.routes.map((r) => [r.route, r.valid]), [['good', true], ['lazy', false]]);
    } finally {
      await h.close();
      await upstream.close();
      await sts.close();
    }
  });
});

/**
 * Issue 13: /status on the admin listener, against a real sidecar with an mTLS identity and
 * a fake STS over https that issues certificate-bound JWTs. JSON and text; the identity,
 * token and subject-token facts it shows; and no secret (subject token, issued tokens,
 * client secret, private key) in /status or in the logs at trace level, in any encoding.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { closeAfter, startHarness, TOKEN_TYPE_JWT } from './helpers/harness.js';
import { startFakeSts, oauthError } from './helpers/fake-sts.js';
import { createTestPki, ALICE_SPIFFE_ID } from './helpers/mtls.js';
import { tempDir } from './helpers/loopback.js';
import { assertNoSecret } from './helpers/secret-exposure.js';
import { eventually } from './helpers/eventually.js';
import { certificateThumbprint } from '../src/tls/thumbprint.js';
import { wantsText } from '../src/admin/server.js';
import { statusReport, type StatusReport } from '../src/admin/status.js';
import { createStsResults } from '../src/admin/sts-results.js';
import { parseConfig } from '../src/config/load.js';
import { StsError } from '../src/errors.js';

/** A compact JWS-shaped token with these claims; /status decodes, never verifies. */
function jwt(claims: Record<string, unknown>): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part(claims)}.${Buffer.from('signature-bytes-here').toString('base64url')}`;
}

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

async function statusOf(adminUrl: string, accept?: string): Promise<{ status: number; type: string; text: string }> {
  const res = await fetch(`${adminUrl}/status`, accept ? { headers: { accept } } : {});
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

describe('/status (issue 13)', () => {
  test('shows listeners, routes, bound JWT claims, the identity, the subject token claims and the STS result; never a secret, logs at trace included', async (t) => {
    const own = closeAfter(t);
    const pki = createTestPki();
    const dir = await tempDir();
    t.after(() => dir.cleanup());
    await writeFile(join(dir.path, 'tls.crt'), pki.alice.certPem);
    await writeFile(join(dir.path, 'tls.key'), pki.alice.keyPem);
    await writeFile(join(dir.path, 'ca.crt'), pki.ca.certPem);
    const thumbprint = certificateThumbprint(pki.alice.certPem);
    const subjectToken = jwt({ iss: 'https://kubernetes.default.svc', sub: 'system:serviceaccount:shop:orders', aud: ['sts.test'], exp: inAnHour() });
    await writeFile(join(dir.path, 'token'), subjectToken);
    const clientSecret = 'client-secret-value-s3cr3t/+';

    const sts = own(
      await startFakeSts({
        tls: { key: pki.server.keyPem, cert: pki.server.certPem, ca: pki.ca.certPem, requestCert: true },
        makeToken: (n) => jwt({ iss: 'https://sts.test', sub: 'orders-app', aud: 'orders.api', exp: inAnHour(), n, cnf: { 'x5t#S256': thumbprint } }),
      }),
    );
    const h = own(
      await startHarness({
        log: { level: 'trace' },
        subjectToken: { file: join(dir.path, 'token'), type: TOKEN_TYPE_JWT },
        sts: { url: sts.tokenUrl, ca: join(dir.path, 'ca.crt'), clientAuth: { method: 'client_secret_post', clientId: 'orders-app', clientSecret: { value: clientSecret } } },
        identity: { cert: join(dir.path, 'tls.crt'), key: join(dir.path, 'tls.key'), ca: join(dir.path, 'ca.crt') },
        routes: [
          { name: 'orders', host: 'orders.test', pathPrefix: '/api', upstream: 'http://127.0.0.1:9/v1', upstreamProtocol: 'h2c', audience: ['orders.api'] },
          { name: 'reports', listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:9', lazy: true },
        ],
      }),
    );
    assert.equal(sts.received.length, 1);
    assert.ok(sts.received[0]!.clientCertificate, 'the STS saw the identity over mTLS');

    const json = await statusOf(h.sidecar.adminUrl);
    assert.equal(json.status, 200);
    assert.match(json.type, /^application\/json/);
    const report = JSON.parse(json.text) as StatusReport;
    assert.equal(report.ready, true);
    assert.equal(report.shuttingDown, false);
    assert.equal(report.config.generation, 1);
    assert.ok(!Number.isNaN(Date.parse(report.config.loadedAt)));
    assert.deepEqual(
      report.listeners.map((l) => [l.kind, l.name, l.url]),
      [
        ['proxy', 'proxy', h.sidecar.proxyUrl],
        ['route', 'reports', h.sidecar.routeUrls['reports']],
        ['admin', 'admin', h.sidecar.adminUrl],
      ],
    );

    const [orders, reports] = report.routes;
    assert.deepEqual(
      { name: orders!.name, match: orders!.match, upstream: orders!.upstream, upstreamProtocol: orders!.upstreamProtocol, lazy: orders!.lazy, sts: orders!.sts },
      { name: 'orders', match: { host: 'orders.test', pathPrefix: '/api', listen: null }, upstream: 'http://127.0.0.1:9/v1', upstreamProtocol: 'h2c', lazy: false, sts: 'default' },
    );
    assert.equal(orders!.token.valid, true);
    assert.ok(orders!.token.expiresInSeconds! > 3000 && orders!.token.expiresInSeconds! <= 3600);
    assert.equal(orders!.token.refreshing, false);
    assert.equal(orders!.token.consecutiveFailures, 0);
    assert.equal(orders!.token.lastErrorCode, null);
    assert.equal(orders!.token.boundThumbprint, thumbprint);
    assert.equal(orders!.token.issuer, 'https://sts.test');
    assert.equal(orders!.token.subject, 'orders-app');
    assert.deepEqual(orders!.token.audience, ['orders.api']);
    assert.equal(reports!.lazy, true);
    assert.equal(reports!.token.valid, false);
    assert.equal(reports!.match.listen, '127.0.0.1:0');

    assert.ok(report.identity);
    assert.match(report.identity.subject, /CN=alice/);
    assert.ok(report.identity.subjectAltNames.includes(`URI:${ALICE_SPIFFE_ID}`), report.identity.subjectAltNames.join());
    assert.ok(report.identity.subjectAltNames.includes('DNS:alice.apps.demo.test'));
    assert.equal(report.identity.thumbprint, thumbprint);
    assert.ok(Date.parse(report.identity.notAfter) > Date.now());

    assert.deepEqual(report.subjectTokens, [
      {
        name: 'subjectToken',
        source: `file ${join(dir.path, 'token')}`,
        exp: new Date(JSON.parse(Buffer.from(subjectToken.split('.')[1]!, 'base64url').toString())['exp'] * 1000).toISOString(),
        aud: ['sts.test'],
        iss: 'https://kubernetes.default.svc',
        sub: 'system:serviceaccount:shop:orders',
      },
    ]);
    assert.equal(report.sts['default']!.url, sts.tokenUrl);
    assert.equal(report.sts['default']!.lastResult!.outcome, 'success');
    assert.equal(report.sts['default']!.lastResult!.route, 'orders');

    const text = await statusOf(h.sidecar.adminUrl, 'text/plain');
    assert.equal(text.status, 200);
    assert.match(text.type, /^text\/plain/);
    assert.match(text.text, /: ready\n/);
    for (const shown of ['orders.test', 'https://sts.test', 'orders-app', thumbprint, `URI:${ALICE_SPIFFE_ID}`, 'system:serviceaccount:shop:orders', 'success']) {
      assert.ok(text.text.includes(shown), `the text shows ${shown}:\n${text.text}`);
    }

    // The lazy route's first exchange, through its own listener, writes more at trace.
    const lazy = await fetch(`${h.sidecar.routeUrls['reports']}/`).catch(() => undefined);
    await lazy?.body?.cancel();
    await eventually(() => h.sidecar.tokens.status().find((s) => s.route === 'reports')?.valid);
    const secrets: Record<string, string> = {
      'subject token': subjectToken,
      'client secret': clientSecret,
      'private key PEM': pki.alice.keyPem,
      // Any line of the key's base64 body gives part of the key away.
      'private key body': pki.alice.keyPem.split('\n')[1]!,
    };
    sts.issued.forEach((token, i) => (secrets[`issued token ${i + 1}`] = token));
    assert.equal(sts.issued.length, 2);
    const after = await statusOf(h.sidecar.adminUrl);
    assertNoSecret('/status JSON', json.text + after.text, secrets);
    assertNoSecret('/status text', text.text + (await statusOf(h.sidecar.adminUrl, 'text/plain')).text, secrets);
    assert.ok(h.logs.some((l) => l.includes('"level":"trace"') || l.includes('"level":"debug"')), 'logs were written below info');
    assertNoSecret('the logs at trace', h.logs.join(''), secrets);
  });

  test('a failing STS shows in the route and the profile: code and outcome, not ready', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts({ answer: oauthError('invalid_grant', 'subject token rejected') }));
    const h = own(
      await startHarness({
        subjectToken: { value: 'subject-token-for-refusal' },
        sts: { url: sts.tokenUrl },
        routes: [{ name: 'orders', host: 'orders.test', upstream: 'http://127.0.0.1:9' }],
      }),
    );
    const report = JSON.parse((await statusOf(h.sidecar.adminUrl)).text) as StatusReport;
    assert.equal(report.ready, false);
    assert.equal(report.identity, null);
    assert.equal(report.routes[0]!.token.valid, false);
    assert.equal(report.routes[0]!.token.lastErrorCode, 'ERR_STS_OAUTH_ERROR');
    assert.ok(report.routes[0]!.token.consecutiveFailures >= 1);
    assert.equal(report.sts['default']!.lastResult!.outcome, 'oauth_error');
    assert.equal(report.sts['default']!.lastResult!.code, 'ERR_STS_OAUTH_ERROR');
    assert.deepEqual(report.subjectTokens.map((s) => [s.source, s.exp, s.aud]), [['inline value', null, null]]);
    const text = (await statusOf(h.sidecar.adminUrl, 'text/plain')).text;
    assert.match(text, /NOT READY/);
    assert.match(text, /ERR_STS_OAUTH_ERROR/);
    assertNoSecret('/status', text, { 'subject token': 'subject-token-for-refusal' });
  });

  test('Accept picks text only when text/plain outweighs JSON (RFC 9110 12.5.1)', () => {
    assert.equal(wantsText(undefined), false);
    assert.equal(wantsText('text/plain'), true);
    assert.equal(wantsText('text/plain, application/json;q=0.5'), true);
    assert.equal(wantsText('application/json, text/plain;q=0.9'), false);
    assert.equal(wantsText('*/*'), false);
    assert.equal(wantsText('text/html,application/xhtml+xml,*/*;q=0.8'), false);
    assert.equal(wantsText('text/*;q=0.9, */*;q=0.1'), true);
  });

  test('the config generation comes from configInfo; STS results are kept per profile, `default` when a route names none', () => {
    const results = createStsResults((route) => (route === 'g' ? 'google' : 'default'), () => Date.parse('2026-01-01T00:00:00Z'));
    const observer = results.observe({});
    observer.exchanged?.('g', 0.1);
    observer.exchanged?.('o', 0.1, new StsError('ERR_STS_TIMEOUT', 'timed out'));
    const config = parseConfig({ subjectToken: { value: 'subject-token-unit' }, sts: { url: 'http://127.0.0.1:9/token' }, routes: [{ name: 'o', host: 'o.test', upstream: 'http://127.0.0.1:9' }] });
    const report = statusReport({
      config: () => config,
      configInfo: () => ({ generation: 3, file: '/etc/sts-sidecar/config.yaml', loadedAt: '2026-01-01T00:00:00.000Z' }),
      listeners: () => [],
      tokenStatus: () => [],
      identity: () => undefined,
      subjectTokens: () => [],
      stsResults: () => results.last(),
      accepting: () => true,
    });
    assert.deepEqual(report.config, { generation: 3, file: '/etc/sts-sidecar/config.yaml', loadedAt: '2026-01-01T00:00:00.000Z' });
    assert.deepEqual(Object.keys(report.sts), ['default', 'google']);
    assert.deepEqual(report.sts['default']!.lastResult, { at: '2026-01-01T00:00:00.000Z', outcome: 'timeout', code: 'ERR_STS_TIMEOUT', route: 'o' });
    assert.deepEqual(report.sts['google']!.lastResult, { at: '2026-01-01T00:00:00.000Z', outcome: 'success', route: 'g' });
    assert.equal(report.ready, false, 'an eager route without a token');
  });
});

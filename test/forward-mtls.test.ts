/**
 * Issue 4: an upstream that requires mTLS, reached from an app that speaks plain http.
 * The app only sets its proxy variables; the sidecar injects the token and presents the
 * workload identity (identity.cert/key) to the upstream, on every forward-proxy path:
 * absolute-form (curl http_proxy), plain HTTP in a CONNECT tunnel (undici's
 * EnvHttpProxyAgent) and an intercepted HTTPS tunnel (curl https_proxy).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { EnvHttpProxyAgent, request } from 'undici';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { bearer, runClient } from './helpers/forward.js';
import { startHarness, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type LoopbackServer, type TempDir } from './helpers/loopback.js';
import { createTestPki, kubeletWrite } from './helpers/pki.js';
import { startUpstream } from './helpers/upstream.js';

interface Seen {
  readonly url: string;
  readonly authorization: string | undefined;
  /** CN of the client certificate the TLS handshake verified. */
  readonly clientCn: string | undefined;
}

describe('forward proxy to an upstream that requires mTLS', () => {
  let dir: TempDir;
  let sts: FakeSts;
  let upstream: LoopbackServer;
  let h: SidecarHarness;
  let sidecarCa: string;
  let upstreamCa: string;
  const seen: Seen[] = [];
  const tokenFor = (audience: string) => sts.issued[sts.requests.findIndex((p) => p.get('audience') === audience)];

  before(async () => {
    dir = await tempDir();
    const pki = createTestPki();
    const workload = pki.client('orders-app');
    const identityDir = join(dir.path, 'identity');
    await kubeletWrite(identityDir, { 'tls.crt': workload.certPem, 'tls.key': workload.keyPem, 'ca.crt': pki.ca.certPem });
    upstreamCa = join(identityDir, 'ca.crt');
    sts = await startFakeSts();
    // Refuses any TLS client without a certificate from the test CA (the handshake fails).
    upstream = await startUpstream({
      respond: (req, res, socket) => {
        const peer = (socket as TLSSocket).getPeerCertificate();
        seen.push({ url: req.url, authorization: req.headers.authorization, clientCn: peer.subject ? String(peer.subject.CN) : undefined });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ url: req.url, client: peer.subject?.CN ?? null }));
      },
      tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true },
    });
    sidecarCa = join(dir.path, 'sidecar-ca.pem');
    h = await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      identity: { cert: join(identityDir, 'tls.crt'), key: join(identityDir, 'tls.key'), ca: upstreamCa },
      forward: { caCertOut: sidecarCa },
      routes: [
        { name: 'orders', host: 'orders.internal', upstream: upstream.url, audience: 'orders' },
        { name: 'orders-tls', host: 'orders-tls.internal', intercept: true, upstream: upstream.url, audience: 'orders-tls' },
      ],
    });
  });
  after(async () => {
    await h?.close();
    await Promise.all([upstream?.close(), sts?.close()]);
    await dir?.cleanup();
  });

  it('the upstream really requires a client certificate: curl straight to it, trusting its CA, is refused', async () => {
    const r = await runClient('curl', ['-q', '-sS', '--cacert', upstreamCa, `${upstream.url}/direct`]);
    assert.notEqual(r.code, 0);
    assert.equal(seen.length, 0);
  });

  it('curl with http_proxy (plain http) reaches it with the token over the workload certificate', async () => {
    const r = await runClient('curl', ['-q', '-sS', 'http://orders.internal/orders/1'], { http_proxy: h.sidecar.proxyUrl });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { url: '/orders/1', client: 'orders-app' });
    assert.deepEqual(seen.at(-1), { url: '/orders/1', authorization: bearer(tokenFor('orders')), clientCn: 'orders-app' });
  });

  it('undici EnvHttpProxyAgent (plain HTTP inside CONNECT) and curl https_proxy (intercepted) get the same', async () => {
    const agent = new EnvHttpProxyAgent({ httpProxy: h.sidecar.proxyUrl, noProxy: '' });
    try {
      const res = await request('http://orders.internal/orders/2', { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    } finally {
      await agent.close();
    }
    assert.deepEqual(seen.at(-1), { url: '/orders/2', authorization: bearer(tokenFor('orders')), clientCn: 'orders-app' });

    const r = await runClient('curl', ['-q', '-sS', '--cacert', sidecarCa, 'https://orders-tls.internal/orders/3'], { https_proxy: h.sidecar.proxyUrl });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(seen.at(-1), { url: '/orders/3', authorization: bearer(tokenFor('orders-tls')), clientCn: 'orders-app' });
  });
});

/**
 * Issue 4, the forward proxy driven by the clients legacy apps actually use: curl, wget,
 * python3's urllib and undici's EnvHttpProxyAgent, each pointed at the sidecar through its
 * usual proxy setting, against real loopback upstreams. Every test asserts on what the
 * upstream received: the exact token the fake STS issued for that route, or none.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvHttpProxyAgent, request } from 'undici';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { parsedLogs, startHarness, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { bearer, makeUpstreamPki, runClient, startRecordingServer, type RecordingServer } from './helpers/forward.js';

describe('forward proxy: real clients through HTTP_PROXY / HTTPS_PROXY', () => {
  let dir: TempDir;
  let sts: FakeSts;
  let orders: RecordingServer; // plain http upstream of route "orders"
  let payments: RecordingServer; // https upstream (own CA) of the intercepting route "payments"
  let h: SidecarHarness;
  let proxy: string;
  let sidecarCa: string;
  /** The token the fake STS issued for a route, found by the audience it asked for. */
  const tokenFor = (audience: string) => sts.issued[sts.requests.findIndex((p) => p.get('audience') === audience)];

  before(async () => {
    dir = await tempDir();
    const pki = await makeUpstreamPki(dir.path);
    sts = await startFakeSts();
    orders = await startRecordingServer();
    payments = await startRecordingServer({ tls: pki.server });
    sidecarCa = join(dir.path, 'out', 'sidecar-ca.pem');
    h = await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      forward: { caCertOut: sidecarCa },
      routes: [
        { name: 'orders', host: 'orders.internal', upstream: orders.url, audience: 'orders' },
        { name: 'payments', host: 'payments.internal', intercept: true, upstream: payments.url, ca: pki.caFile, audience: 'payments' },
      ],
    });
    proxy = h.sidecar.proxyUrl;
  });
  after(async () => {
    await h?.close();
    await Promise.all([orders?.close(), payments?.close(), sts?.close()]);
    await dir?.cleanup();
  });

  it('the generated interception CA certificate is written to forward.caCertOut (never its key) and logged', async () => {
    const pem = await readFile(sidecarCa, 'utf8');
    assert.match(pem, /^-----BEGIN CERTIFICATE-----/);
    assert.doesNotMatch(pem, /PRIVATE KEY/);
    const line = parsedLogs(h.logs).find((l) => l['caCert'] === sidecarCa);
    assert.ok(line, 'a log line names the CA certificate path');
  });

  it('curl with lowercase http_proxy sends absolute-form and the route injects its token', async () => {
    const r = await runClient('curl', ['-q', '-sS', '-w', '\n%{http_code}', 'http://orders.internal/orders?id=7'], { http_proxy: proxy });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\n200$/);
    const seen = orders.requests.at(-1)!;
    assert.equal(seen.url, '/orders?id=7');
    assert.equal(seen.headers.authorization, bearer(tokenFor('orders')));
    assert.equal(seen.headers.host, new URL(orders.url).host, 'Host is the upstream\'s');
    assert.equal(seen.headers['proxy-connection'], undefined, 'curl sends Proxy-Connection; it is consumed');
  });

  it('curl ignores uppercase HTTP_PROXY (so the README tells apps to set http_proxy)', async () => {
    const before = orders.requests.length;
    const r = await runClient('curl', ['-q', '-sS', '-m', '5', 'http://orders.internal/upper'], { HTTP_PROXY: proxy });
    // Without the proxy curl resolves orders.internal itself, which does not exist.
    assert.equal(r.code, 6, `curl exit ${r.code}: ${r.stderr}`);
    assert.equal(orders.requests.length, before);
  });

  it('curl with https_proxy and --cacert <sidecar CA>: CONNECT is intercepted, the token injected, the upstream reached over its own TLS', async () => {
    const r = await runClient('curl', ['-q', '-sS', '-v', '--cacert', sidecarCa, 'https://payments.internal/pay'], { https_proxy: proxy });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /CONNECT payments\.internal:443/);
    assert.match(r.stderr, /issuer: O=sts-sidecar; CN=sts-sidecar forward proxy CA/);
    assert.deepEqual(JSON.parse(r.stdout), { url: '/pay', authorization: bearer(tokenFor('payments')), tls: true });
    assert.equal(payments.requests.at(-1)!.headers.host, new URL(payments.url).host);
  });

  it('curl without the sidecar CA refuses the intercepted connection: nothing reaches the upstream', async () => {
    const before = payments.requests.length;
    const r = await runClient('curl', ['-q', '-sS', 'https://payments.internal/untrusted'], { https_proxy: proxy });
    assert.equal(r.code, 60, `curl exit ${r.code}: ${r.stderr}`); // peer certificate cannot be authenticated
    assert.equal(payments.requests.length, before);
  });

  it('wget through http_proxy (absolute-form) and https_proxy with --ca-certificate (interception)', async () => {
    const plain = await runClient('wget', ['--no-config', '-q', '-O', '-', 'http://orders.internal/wget'], { http_proxy: proxy });
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(orders.requests.at(-1)!.url, '/wget');
    assert.equal(orders.requests.at(-1)!.headers.authorization, bearer(tokenFor('orders')));

    const tls = await runClient('wget', ['--no-config', '-q', '-O', '-', `--ca-certificate=${sidecarCa}`, 'https://payments.internal/wget'], {
      https_proxy: proxy,
    });
    assert.equal(tls.code, 0, tls.stderr);
    assert.deepEqual(JSON.parse(tls.stdout), { url: '/wget', authorization: bearer(tokenFor('payments')), tls: true });
  });

  it('python3 urllib over http: absolute-form, its Proxy-Authorization consumed, the token injected', async () => {
    const script = [
      'import sys, urllib.request',
      "opener = urllib.request.build_opener(urllib.request.ProxyHandler({'http': sys.argv[1]}))",
      "r = opener.open('http://orders.internal/py?x=1')",
      'print(r.status)',
    ].join('\n');
    // Credentials in the proxy URL make urllib send Proxy-Authorization: Basic ...
    const withCredentials = proxy.replace('http://', 'http://app:proxy-password@');
    const r = await runClient('python3', ['-c', script, withCredentials]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '200');
    const seen = orders.requests.at(-1)!;
    assert.equal(seen.url, '/py?x=1');
    assert.equal(seen.headers.authorization, bearer(tokenFor('orders')));
    assert.equal(seen.headers['proxy-authorization'], undefined);
    assert.ok(!JSON.stringify(seen.rawHeaders).includes('proxy-password'));
  });

  it('python3 urllib over https (HTTP/1.0 CONNECT without Host, env https_proxy + SSL_CERT_FILE): intercepted and injected', async () => {
    const script = "import urllib.request; r = urllib.request.urlopen('https://payments.internal/py'); print(r.read().decode())";
    const r = await runClient('python3', ['-c', script], { https_proxy: proxy, SSL_CERT_FILE: sidecarCa });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { url: '/py', authorization: bearer(tokenFor('payments')), tls: true });
  });

  it('python3 requests over https with HTTPS_PROXY and REQUESTS_CA_BUNDLE: intercepted and injected', async () => {
    const script = "import requests; r = requests.get('https://payments.internal/requests', timeout=10); print(r.text)";
    const r = await runClient('python3', ['-c', script], { HTTPS_PROXY: proxy, REQUESTS_CA_BUNDLE: sidecarCa });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { url: '/requests', authorization: bearer(tokenFor('payments')), tls: true });
  });

  it('python3 urllib under CGI (REQUEST_METHOD set) ignores uppercase HTTP_PROXY but honours http_proxy', async () => {
    const script = "import urllib.request; print(urllib.request.urlopen('http://orders.internal/cgi', timeout=5).status)";
    const before = orders.requests.length;
    const upper = await runClient('python3', ['-c', script], { HTTP_PROXY: proxy, REQUEST_METHOD: 'GET' });
    assert.notEqual(upper.code, 0, 'without a proxy orders.internal does not resolve');
    assert.equal(orders.requests.length, before);
    const lower = await runClient('python3', ['-c', script], { http_proxy: proxy, REQUEST_METHOD: 'GET' });
    assert.equal(lower.code, 0, lower.stderr);
    assert.equal(orders.requests.at(-1)!.headers.authorization, bearer(tokenFor('orders')));
  });

  it('undici EnvHttpProxyAgent tunnels http:// with CONNECT; the sidecar parses HTTP inside and injects', async () => {
    const metric = async () => {
      const text = await (await request(`${h.sidecar.adminUrl}/metrics`)).body.text();
      return Number(/sts_sidecar_forward_requests_total\{kind="connect",result="http"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    const before = await metric();
    const agent = new EnvHttpProxyAgent({ httpProxy: proxy, httpsProxy: proxy, noProxy: '' });
    try {
      const res = await request('http://orders.internal/undici', { dispatcher: agent, headers: { authorization: 'Bearer app-own' } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    } finally {
      await agent.close();
    }
    const seen = orders.requests.at(-1)!;
    assert.equal(seen.url, '/undici');
    assert.equal(seen.headers.authorization, bearer(tokenFor('orders')), "the app's own Authorization is replaced (replaceExisting)");
    assert.equal(await metric(), before + 1, 'the request travelled in a CONNECT tunnel');
  });

  it('undici EnvHttpProxyAgent to https with requestTls.ca = the sidecar CA: intercepted and injected', async () => {
    const agent = new EnvHttpProxyAgent({ httpProxy: proxy, httpsProxy: proxy, noProxy: '', requestTls: { ca: await readFile(sidecarCa, 'utf8') } });
    try {
      for (const path of ['/undici-1', '/undici-2']) {
        const res = await request(`https://payments.internal${path}`, { dispatcher: agent });
        assert.equal(res.statusCode, 200);
        assert.deepEqual(await res.body.json(), { url: path, authorization: bearer(tokenFor('payments')), tls: true });
      }
    } finally {
      await agent.close();
    }
  });

  it('no token and no proxy password appear in any log line', () => {
    const text = h.logs.join('');
    assert.ok(sts.issued.length >= 2);
    for (const token of sts.issued) assert.ok(!text.includes(token), 'an issued token was logged');
    assert.ok(!text.includes('proxy-password'));
    assert.ok(!text.includes('iamtheeggman'));
  });
});

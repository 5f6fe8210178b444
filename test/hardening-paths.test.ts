/**
 * Issue 10 item 7: a route's token never leaves its route through dot-segments. The sidecar
 * matches and forwards one normalised target (RFC 3986 5.2.4, `%2e` read as `.`), refuses paths
 * readers could disagree on (400 ERR_PROXY_PATH_REJECTED), and keeps a legitimate `%2F`.
 * Every entry is tried: shared listener, dedicated listener, absolute-form, inside a CONNECT
 * tunnel, intercepted TLS, and upgrades, with curl --path-as-is and raw sockets (clients that
 * normalise would hide the attack).
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { PathRejectedError } from '../src/errors.js';
import { normalizeRequestTarget } from '../src/proxy/request-path.js';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { startHarness, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { bearer, completeResponse, RawClient, runClient, startRecordingServer, type RecordingServer } from './helpers/forward.js';

describe('normalizeRequestTarget (RFC 3986 5.2.4)', () => {
  it('removes dot-segments, %2e counting as "."', () => {
    const cases: Array<[string, string]> = [
      ['/api/../admin', '/admin'],
      ['/api/%2e%2e/admin', '/admin'],
      ['/api/.%2E/admin', '/admin'],
      ['/api/%2e/x', '/api/x'],
      ['/a/b/c/./../../g', '/a/g'],
      ['/api/..', '/'],
      ['/api/.', '/api/'],
      ['/../payments-api/refund', '/payments-api/refund'],
      ['/a//../b', '/a/b'],
      ['/api/../admin?next=/../x', '/admin?next=/../x'],
    ];
    for (const [input, expected] of cases) assert.equal(normalizeRequestTarget(input), expected, input);
  });

  it('leaves every other path as sent: %2F inside a segment, dots in names, the query', () => {
    for (const target of ['/storage/v1/b/bucket/o/dir%2Fobject', '/file.tar.gz', '/.well-known/jwks.json', '/a..b/...', '/a\\b', '/x?q=../../%2e%2e', '/%41%2E']) {
      assert.equal(normalizeRequestTarget(target), target);
    }
  });

  it('refuses paths whose meaning depends on the reader: ERR_PROXY_PATH_REJECTED', () => {
    for (const target of [
      '/api/..%2fadmin',
      '/api/..%2Fadmin',
      '/api/%2e%2e%5cadmin',
      '/api/..\\admin',
      '/api/x%2f..',
      '/api/..;/admin',
      '/api/%2e%2e%3bx/admin',
      '/api/x%00',
      '/api/%0d%0aX: y',
      '/api/%7f',
      '/api/x#/../../admin',
      'api/x',
    ]) {
      assert.throws(() => normalizeRequestTarget(target), (err: unknown) => err instanceof PathRejectedError && err.code === 'ERR_PROXY_PATH_REJECTED', target);
    }
  });
});

describe('dot-segments at every entry keep the token on its route', () => {
  let dir: TempDir;
  let sts: FakeSts;
  let api: RecordingServer; // upstream of the /api routes, under base path /base
  let admin: RecordingServer; // upstream of the /admin routes
  let orders: RecordingServer; // upstream of a dedicated-port route, under base path /orders-api
  let h: SidecarHarness;
  let proxyPort: number;
  let sidecarCa: string;
  const tokenFor = (audience: string) => sts.issued[sts.requests.findIndex((p) => p.get('audience') === audience)];
  const counts = () => [api.requests.length, admin.requests.length, orders.requests.length];

  before(async () => {
    dir = await tempDir();
    sts = await startFakeSts();
    api = await startRecordingServer();
    admin = await startRecordingServer();
    orders = await startRecordingServer();
    sidecarCa = join(dir.path, 'sidecar-ca.pem');
    h = await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      forward: { caCertOut: sidecarCa },
      routes: [
        { name: 'api', host: 'svc.internal', pathPrefix: '/api', upstream: `${api.url}/base`, audience: 'api' },
        { name: 'admin', host: 'svc.internal', pathPrefix: '/admin', upstream: admin.url, audience: 'admin' },
        { name: 'orders', listen: '127.0.0.1:0', upstream: `${orders.url}/orders-api`, audience: 'orders' },
        { name: 'secure-api', host: 'secure.internal', pathPrefix: '/api', intercept: true, upstream: `${api.url}/base`, audience: 'secure-api' },
        { name: 'secure-admin', host: 'secure.internal', pathPrefix: '/admin', intercept: true, upstream: admin.url, audience: 'secure-admin' },
      ],
    });
    proxyPort = Number(new URL(h.sidecar.proxyUrl).port);
  });
  after(async () => {
    await h?.close();
    await Promise.all([api, admin, orders, sts].map((s) => s?.close()));
    await dir?.cleanup();
  });

  // The invariant, after every test: each upstream saw only paths of its own routes, each with
  // one of its own routes' tokens. Before the fix, /base/api/../admin reached `api` with its token.
  afterEach(() => {
    const under = (prefix: string, url: string) => url === prefix || url.startsWith(`${prefix}/`) || url.startsWith(`${prefix}?`);
    for (const r of api.requests) {
      assert.ok(under('/base/api', r.url) && !/\/\.\.?(\/|$|\?)|%2e/i.test(r.url.split('?')[0]!), `api upstream got ${r.url}`);
      assert.ok([bearer(tokenFor('api')), bearer(tokenFor('secure-api'))].includes(String(r.headers.authorization)));
    }
    for (const r of admin.requests) {
      assert.ok(under('/admin', r.url), `admin upstream got ${r.url}`);
      assert.ok([bearer(tokenFor('admin')), bearer(tokenFor('secure-admin'))].includes(String(r.headers.authorization)));
    }
    for (const r of orders.requests) assert.ok(under('/orders-api', r.url) && !r.url.includes('..'), `orders upstream got ${r.url}`);
  });

  const curl = (args: string[], env: Record<string, string> = {}) =>
    runClient('curl', ['-q', '-sS', '--path-as-is', '-w', '\n%{http_code}', ...args], env);
  const rejected = (stdout: string) => stdout.includes('"code":"ERR_PROXY_PATH_REJECTED"') && stdout.endsWith('\n400');

  it('shared listener: /api/../admin and /api/%2e%2e/admin are /admin, with the admin route and its token', async () => {
    for (const path of ['/api/../admin', '/api/%2e%2e/admin', '/api/.%2E/admin/']) {
      const r = await curl(['-H', 'Host: svc.internal', `${h.sidecar.proxyUrl}${path}`]);
      assert.match(r.stdout, /\n200$/, `${path}: ${r.stdout} ${r.stderr}`);
      const seen = admin.requests.at(-1)!;
      assert.match(seen.url, /^\/admin\/?$/);
      assert.equal(seen.headers.authorization, bearer(tokenFor('admin')));
    }
    assert.equal(api.requests.length, 0);
  });

  it('shared listener: an encoded slash or backslash hiding a dot-segment, NUL and controls get 400 ERR_PROXY_PATH_REJECTED', async () => {
    const before = counts();
    for (const path of ['/api/..%2fadmin', '/api/%2e%2e%5cadmin', '/api/..%5Cadmin', '/api/x%00', '/api/%0a']) {
      const r = await curl(['-H', 'Host: svc.internal', `${h.sidecar.proxyUrl}${path}`]);
      assert.ok(rejected(r.stdout), `${path}: ${r.stdout}`);
    }
    // A raw backslash, which curl would not send as is.
    const raw = await RawClient.connect(proxyPort);
    raw.write('GET /api/..\\admin HTTP/1.1\r\nHost: svc.internal\r\n\r\n');
    assert.match(await raw.take(completeResponse), /^HTTP\/1\.1 400 [^]*"code":"ERR_PROXY_PATH_REJECTED"/);
    raw.close();
    assert.deepEqual(counts(), before);
  });

  it('a legitimate %2F inside a segment and the query pass unchanged', async () => {
    const r = await curl(['-H', 'Host: svc.internal', `${h.sidecar.proxyUrl}/api/storage/o/dir%2Fobject?next=/../x&y=%2e%2e`]);
    assert.match(r.stdout, /\n200$/);
    assert.equal(api.requests.at(-1)!.url, '/base/api/storage/o/dir%2Fobject?next=/../x&y=%2e%2e');
  });

  it("dedicated listener: /../payments-api/refund stays under the upstream's base path", async () => {
    for (const path of ['/../payments-api/refund', '/%2e%2e/payments-api/refund']) {
      const r = await curl([`${h.sidecar.routeUrls['orders']}${path}`]);
      assert.match(r.stdout, /\n200$/);
      assert.equal(orders.requests.at(-1)!.url, '/orders-api/payments-api/refund');
    }
    const r = await curl([`${h.sidecar.routeUrls['orders']}/x/..%2f..%2fpayments-api`]);
    assert.ok(rejected(r.stdout), r.stdout);
  });

  it('absolute-form: the normalised path picks the route and is what is forwarded', async () => {
    const client = await RawClient.connect(proxyPort);
    client.write('GET http://svc.internal/api/%2e%2e/admin HTTP/1.1\r\nHost: svc.internal\r\n\r\n');
    assert.match(await client.take(completeResponse), /^HTTP\/1\.1 200 /);
    assert.equal(admin.requests.at(-1)!.url, '/admin');
    const before = counts();
    client.write('GET http://svc.internal/api/..%2fadmin HTTP/1.1\r\nHost: svc.internal\r\n\r\n');
    assert.match(await client.take(completeResponse), /^HTTP\/1\.1 400 [^]*"code":"ERR_PROXY_PATH_REJECTED"/);
    client.close();
    assert.deepEqual(counts(), before);
    // curl as an http_proxy client too.
    const r = await curl(['http://svc.internal/api/../admin/x'], { http_proxy: h.sidecar.proxyUrl });
    assert.match(r.stdout, /\n200$/);
    assert.equal(admin.requests.at(-1)!.url, '/admin/x');
  });

  it('inside a CONNECT tunnel', async () => {
    const client = await RawClient.connect(proxyPort);
    client.write('CONNECT svc.internal:80 HTTP/1.1\r\nHost: svc.internal:80\r\n\r\n');
    assert.match(await client.take((s) => s.includes('\r\n\r\n')), /^HTTP\/1\.1 200 /);
    client.write('GET /api/../admin HTTP/1.1\r\nHost: svc.internal\r\n\r\n');
    assert.match(await client.take(completeResponse), /^HTTP\/1\.1 200 /);
    assert.equal(admin.requests.at(-1)!.url, '/admin');
    const before = counts();
    client.write('GET /api/%2e%2e%5cadmin HTTP/1.1\r\nHost: svc.internal\r\n\r\n');
    assert.match(await client.take(completeResponse), /^HTTP\/1\.1 400 [^]*"code":"ERR_PROXY_PATH_REJECTED"/);
    client.close();
    assert.deepEqual(counts(), before);
  });

  it('on intercepted TLS', async () => {
    const env = { https_proxy: h.sidecar.proxyUrl };
    const r = await curl(['--cacert', sidecarCa, 'https://secure.internal/api/%2e%2e/admin'], env);
    assert.match(r.stdout, /\n200$/, r.stderr);
    assert.equal(admin.requests.at(-1)!.url, '/admin');
    assert.equal(admin.requests.at(-1)!.headers.authorization, bearer(tokenFor('secure-admin')));
    const before = counts();
    const refused = await curl(['--cacert', sidecarCa, 'https://secure.internal/api/..%2Fadmin'], env);
    assert.ok(rejected(refused.stdout), refused.stdout);
    assert.deepEqual(counts(), before);
  });

  it('upgrades: the resolvers normalise too (shared, dedicated, absolute-form)', async () => {
    const upgrade = 'Connection: Upgrade\r\nUpgrade: echo\r\n\r\n';
    const ask = async (port: number, head: string) => {
      const client = await RawClient.connect(port);
      client.write(head + upgrade);
      const answer = await client.take(completeResponse);
      client.close();
      return answer;
    };
    // The recording upstreams ignore Upgrade and answer 200: that is relayed, the path is what matters.
    assert.match(await ask(proxyPort, 'GET /api/%2e%2e/admin HTTP/1.1\r\nHost: svc.internal\r\n'), /^HTTP\/1\.1 200 /);
    assert.equal(admin.requests.at(-1)!.url, '/admin');
    assert.match(await ask(proxyPort, 'GET http://svc.internal/api/../admin/ws HTTP/1.1\r\nHost: svc.internal\r\n'), /^HTTP\/1\.1 200 /);
    assert.equal(admin.requests.at(-1)!.url, '/admin/ws');
    const dedicated = Number(new URL(h.sidecar.routeUrls['orders']!).port);
    assert.match(await ask(dedicated, 'GET /../payments-api/ws HTTP/1.1\r\nHost: x\r\n'), /^HTTP\/1\.1 200 /);
    assert.equal(orders.requests.at(-1)!.url, '/orders-api/payments-api/ws');
    const before = counts();
    assert.match(await ask(proxyPort, 'GET /api/..%2fadmin HTTP/1.1\r\nHost: svc.internal\r\n'), /^HTTP\/1\.1 400 [^]*"code":"ERR_PROXY_PATH_REJECTED"/);
    assert.match(await ask(proxyPort, 'GET http://svc.internal/api/..%2fadmin HTTP/1.1\r\nHost: svc.internal\r\n'), /^HTTP\/1\.1 400 [^]*ERR_PROXY_PATH_REJECTED/);
    assert.deepEqual(counts(), before);
  });
});

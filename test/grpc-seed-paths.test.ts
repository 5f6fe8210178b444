/**
 * Issue 12: the seed's flow three ways, the seed's gRPC server (grpc-js) letting in only
 * `authorization: Bearer iamthewalrus`, the reference STS exchanging `iamtheeggman` for it:
 *
 *   (1) grpc-go's own credentials/sts against the sidecar's token endpoint: proven in
 *       test/grpc-token-endpoint.test.ts (both `callers` modes), not repeated here;
 *   (2) a gRPC app with no credentials of its own, dialling a route port (h2c);
 *   (3) a gRPC app with `http_proxy` set to the sidecar's shared port: grpc-js sends
 *       CONNECT host:port even for a cleartext target and speaks h2c in the tunnel; the
 *       route naming that host:port injects. And the TLS variant: CONNECT to an
 *       intercepting route, the sidecar's leaf offering h2 through ALPN.
 *
 * Then the listeners as curl sees them: `--http2-prior-knowledge` on a route port and on
 * the shared port (HTTP/2 upstream, cleartext and TLS), and `--http2` through the forward
 * proxy still answered 200 (RFC 9113 3.2: the client offers h2 and http/1.1 by ALPN).
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startDevSts, type DevSts } from '../src/devsts/index.js';
import { TOKEN_TYPE_ACCESS, startHarness, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { createTestPki } from './helpers/pki.js';
import { runClient, startRecordingServer, type RecordingServer } from './helpers/forward.js';
import { callError, createEchoClient, createEchoClientThroughProxyEnv } from './helpers/grpc-client.js';
import { startH2Upstream, type TestH2Upstream } from './helpers/grpc-h2-upstream.js';
import { SEED_AUTHORIZATION } from './helpers/grpc-proto.js';
import { startGrpcServer, type TestGrpcServer } from './helpers/grpc-server.js';

/** What an app with http_proxy dials: a name only the sidecar's route knows (no DNS on the app's side). */
const PROXIED_GRPC = 'echo.grpc.internal:50051';
/** An intercepted TLS destination on the default port. */
const INTERCEPTED_GRPC = 'secure-echo.grpc.internal';

const pki = createTestPki('seed paths CA');
let dir: TempDir;
let caFile: string;
let sidecarCa: string;
let sts: DevSts;
let h2cGrpc: TestGrpcServer;
let tlsGrpc: TestGrpcServer;
let h2c: TestH2Upstream;
let h2Tls: TestH2Upstream;
let plain: RecordingServer;
let secure: RecordingServer;
let h: SidecarHarness;

before(async () => {
  dir = await tempDir('sts-sidecar-seed-paths-');
  caFile = join(dir.path, 'upstream-ca.pem');
  await writeFile(caFile, pki.ca.certPem);
  sidecarCa = join(dir.path, 'out', 'sidecar-ca.pem');
  const tls = { cert: pki.server.certPem, key: pki.server.keyPem };
  sts = await startDevSts({ staticRules: [{ subjectToken: 'iamtheeggman', issuedToken: 'iamthewalrus', lifetimeSeconds: 3600 }] });
  [h2cGrpc, tlsGrpc, h2c, h2Tls, plain, secure] = await Promise.all([
    startGrpcServer(),
    startGrpcServer({ tls }),
    startH2Upstream(),
    startH2Upstream({ tls }),
    startRecordingServer(),
    startRecordingServer({ tls }),
  ]);
  h = await startHarness({
    subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
    sts: { url: sts.tokenUrl },
    forward: { caCertOut: sidecarCa },
    routes: [
      { name: 'grpc', listen: '127.0.0.1:0', upstream: `http://${h2cGrpc.address}`, upstreamProtocol: 'h2c' },
      { name: 'grpc-proxied', host: PROXIED_GRPC, upstream: `http://${h2cGrpc.address}`, upstreamProtocol: 'h2c' },
      { name: 'grpc-intercepted', host: INTERCEPTED_GRPC, intercept: true, upstream: `https://${tlsGrpc.address}`, ca: caFile },
      { name: 'h2c', host: 'h2c.internal', listen: '127.0.0.1:0', upstream: h2c.url, upstreamProtocol: 'h2c' },
      { name: 'h2-tls', host: 'h2-tls.internal', listen: '127.0.0.1:0', upstream: h2Tls.url, ca: caFile },
      { name: 'plain', host: 'plain.internal', upstream: plain.url },
      { name: 'secure', host: 'secure.internal', intercept: true, upstream: secure.url, ca: caFile },
    ],
  });
});

after(async () => {
  await h?.close();
  await Promise.all([h2cGrpc, tlsGrpc, h2c, h2Tls, plain, secure, sts].map((s) => s?.close()));
  await dir?.cleanup();
});

const routePort = (route: string) => Number(new URL(h.sidecar.routeUrls[route]!).port);
const proxyPort = () => Number(new URL(h.sidecar.proxyUrl).port);

describe('seed path (2): a gRPC app dials a route port and holds no token', () => {
  test('directly the seed server refuses it; through the route port it is let in with iamthewalrus', async (t) => {
    const direct = createEchoClient(h2cGrpc.address);
    const viaSidecar = createEchoClient(`127.0.0.1:${routePort('grpc')}`);
    t.after(() => (direct.close(), viaSidecar.close()));
    assert.equal((await callError(direct.unary({ message: 'alone' }))).code, grpc.status.UNAUTHENTICATED);
    const { value, trailers } = await viaSidecar.unary({ message: 'seed' });
    assert.equal(value.message, 'seed');
    assert.equal(value.metadata['authorization'], SEED_AUTHORIZATION);
    assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
    const streamed = await viaSidecar.bidi([{ message: 'a' }, { message: 'b' }]);
    assert.deepEqual(streamed.value.map((r) => r.metadata['authorization']), [SEED_AUTHORIZATION, SEED_AUTHORIZATION]);
  });
});

describe('seed path (3): a gRPC app with http_proxy set to the sidecar\'s shared port', () => {
  test('cleartext target: CONNECT, h2c inside the tunnel, the route for that host:port injects iamthewalrus', async (t) => {
    const client = createEchoClientThroughProxyEnv(PROXIED_GRPC, h.sidecar.proxyUrl);
    t.after(() => client.close());
    const seen = h2cGrpc.calls.length;
    const { value, trailers } = await client.unary({ message: 'through the proxy' }, { deadlineMs: 10_000 });
    assert.equal(value.metadata['authorization'], SEED_AUTHORIZATION);
    assert.deepEqual(trailers.get('x-echo-trailer'), ['done']);
    const stream = await client.serverStream({ count: 3 }, { deadlineMs: 10_000 });
    assert.equal(stream.value.length, 3);
    assert.equal(h2cGrpc.calls.length, seen + 2, 'both calls reached the seed server');
  });

  test('TLS target on an intercepting route: the sidecar\'s leaf negotiates h2 (ALPN) and injects iamthewalrus', async (t) => {
    // The app trusts the sidecar's interception CA (as with curl --cacert), not the server's.
    const client = createEchoClientThroughProxyEnv(INTERCEPTED_GRPC, h.sidecar.proxyUrl, { tls: { ca: await readFile(sidecarCa, 'utf8') } });
    t.after(() => client.close());
    const { value } = await client.unary({ message: 'intercepted' }, { deadlineMs: 10_000 });
    assert.equal(value.metadata['authorization'], SEED_AUTHORIZATION);
    assert.equal(tlsGrpc.calls.at(-1)!.metadata['authorization'], SEED_AUTHORIZATION);
  });
});

/** Runs curl with a clean environment; `-w` appends the status and the HTTP version it spoke. */
async function curl(args: readonly string[], env: Record<string, string> = {}): Promise<{ status: string; version: string; body: string; stderr: string }> {
  const r = await runClient('curl', ['-q', '-sS', '-m', '10', '-w', '\n%{http_code} %{http_version}', ...args], env);
  assert.equal(r.code, 0, `curl exit ${r.code}: ${r.stderr}`);
  const cut = r.stdout.lastIndexOf('\n');
  const [status = '', version = ''] = r.stdout.slice(cut + 1).split(' ');
  return { status, version, body: r.stdout.slice(0, cut), stderr: r.stderr };
}

describe('curl --http2-prior-knowledge through both listener kinds', () => {
  test('route port -> h2c upstream: 200 over HTTP/2 both sides, the token injected', async () => {
    const r = await curl(['--http2-prior-knowledge', `http://127.0.0.1:${routePort('h2c')}/hello?x=1`]);
    assert.equal(r.status, '200');
    assert.equal(r.version, '2');
    const seen = JSON.parse(r.body) as { path: string; authorization: string; httpVersion: string };
    assert.deepEqual([seen.path, seen.authorization, seen.httpVersion], ['/hello?x=1', SEED_AUTHORIZATION, '2.0']);
  });

  test('shared port, route chosen by :authority -> h2c upstream', async () => {
    const r = await curl(['--http2-prior-knowledge', '--connect-to', `h2c.internal:80:127.0.0.1:${proxyPort()}`, 'http://h2c.internal/by-authority']);
    assert.equal(r.status, '200');
    assert.equal(r.version, '2');
    assert.equal(h2c.requests.at(-1)!.authorization, SEED_AUTHORIZATION);
    assert.equal(h2c.requests.at(-1)!.path, '/by-authority');
  });

  test('route port and shared port -> an HTTP/2-only TLS upstream (auto: ALPN h2)', async () => {
    const byPort = await curl(['--http2-prior-knowledge', `http://127.0.0.1:${routePort('h2-tls')}/tls`]);
    assert.equal(byPort.status, '200');
    const byAuthority = await curl(['--http2-prior-knowledge', '--connect-to', `h2-tls.internal:80:127.0.0.1:${proxyPort()}`, 'http://h2-tls.internal/tls2']);
    assert.equal(byAuthority.status, '200');
    assert.deepEqual(h2Tls.requests.slice(-2).map((q) => [q.path, q.authorization]), [['/tls', SEED_AUTHORIZATION], ['/tls2', SEED_AUTHORIZATION]]);
  });

  test('the same listeners still speak HTTP/1.1 to curl without the flag', async () => {
    const r = await curl([`http://127.0.0.1:${routePort('h2c')}/h1`]);
    assert.equal(r.status, '200');
    assert.equal(r.version, '1.1');
    assert.equal(h2c.requests.at(-1)!.authorization, SEED_AUTHORIZATION);
  });
});

describe('curl --http2 through the forward proxy still answers 200', () => {
  test('http_proxy, http:// target (absolute-form): 200, the token injected', async () => {
    const r = await curl(['--http2', 'http://plain.internal/h2-flag'], { http_proxy: h.sidecar.proxyUrl });
    assert.equal(r.status, '200');
    assert.equal(plain.requests.at(-1)!.headers.authorization, SEED_AUTHORIZATION);
  });

  test('https_proxy, intercepted https:// target: h2 by ALPN with the sidecar, HTTP/1.1 upstream, 200', async () => {
    const r = await curl(['--http2', '--cacert', sidecarCa, 'https://secure.internal/h2-flag'], { https_proxy: h.sidecar.proxyUrl });
    assert.equal(r.status, '200');
    assert.equal(r.version, '2', 'the intercepted TLS offers h2');
    assert.equal(secure.requests.at(-1)!.headers.authorization, SEED_AUTHORIZATION);
    assert.equal(secure.requests.at(-1)!.url, '/h2-flag');
  });
});

/**
 * Issue 10 items 21 and 22, CONNECT on the forward proxy.
 * 21: a routed https destination that is not intercepted is dialled before the 200, so an
 *     unreachable one gets 502 ERR_UPSTREAM_UNREACHABLE (as an unrouted one does), counted
 *     once; the dialled connection is the one spliced.
 * 22: a failed TLS handshake on an intercepted tunnel is logged with the hint that matches
 *     it (`reason`): no common ALPN protocol, the app refused the certificate, or the app
 *     hung up mid-handshake.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { eventually } from './helpers/eventually.js';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { parsedLogs, startHarness, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { bearer, completeResponse, makeUpstreamPki, RawClient, runClient, startRecordingServer, type RecordingServer } from './helpers/forward.js';

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Whether 127.0.0.1:port refuses connections. */
function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

/** Opens a CONNECT tunnel with node:http; resolves with the proxy's status and the socket. */
function openTunnel(proxyPort: number, authority: string): Promise<{ status: number; socket: Socket; head: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: authority });
    req.once('connect', (res, socket) => resolve({ status: res.statusCode ?? 0, socket, head: JSON.stringify(res.headers) }));
    req.once('error', reject);
    req.end();
  });
}

/** The sidecar's forward_requests_total{kind="connect"} counters, by result. */
async function connectCounts(h: SidecarHarness): Promise<Record<string, number>> {
  const text = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^sts_sidecar_forward_requests_total\{kind="connect",result="(\w+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const d = (after[key] ?? 0) - (before[key] ?? 0);
    if (d !== 0) out[key] = d;
  }
  return out;
}

describe('issue 10 items 21 and 22: CONNECT to routed destinations', () => {
  let dir: TempDir;
  let sts: FakeSts;
  let plain: RecordingServer; // http upstream of the routes that are never reached directly
  let tls: RecordingServer; // https server: the routed, not intercepted, reachable destination
  let upstreamCa: string;
  let sidecarCa: string;
  let closed: number;
  let h: SidecarHarness;
  let proxyPort: number;
  const tls443Closed = refuses(443);

  before(async () => {
    dir = await tempDir('sts-sidecar-connect-');
    const pki = await makeUpstreamPki(dir.path);
    upstreamCa = pki.caFile;
    sts = await startFakeSts();
    plain = await startRecordingServer();
    tls = await startRecordingServer({ tls: pki.server });
    closed = await closedPort();
    sidecarCa = join(dir.path, 'sidecar-ca.pem');
    h = await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      forward: { caCertOut: sidecarCa },
      routes: [
        // Port-less host: an https destination on 443 only.
        { name: 'nowhere', host: 'nowhere.invalid', upstream: plain.url, audience: 'nowhere' },
        { name: 'loopback-443', host: '127.0.0.1', upstream: plain.url, audience: 'loopback-443' },
        // Explicit port: the same host:port is an http destination too.
        { name: 'closed-port', host: `127.0.0.1:${closed}`, upstream: plain.url, audience: 'closed-port' },
        { name: 'open-tls', host: `127.0.0.1:${tls.port}`, upstream: tls.url, ca: upstreamCa, audience: 'open-tls' },
        { name: 'payments', host: 'payments.internal', intercept: true, upstream: tls.url, ca: upstreamCa, audience: 'payments' },
        { name: 'ledger', host: 'ledger.internal', intercept: true, upstream: tls.url, ca: upstreamCa, audience: 'ledger' },
      ],
    });
    proxyPort = Number(new URL(h.sidecar.proxyUrl).port);
  });
  after(async () => {
    await h?.close();
    await Promise.all([plain?.close(), tls?.close(), sts?.close()]);
    await dir?.cleanup();
  });

  it('item 21: curl to a routed https host that does not resolve gets 502 ERR_UPSTREAM_UNREACHABLE, not 200 then a close; counted once', async () => {
    const before = await connectCounts(h);
    const r = await runClient('curl', ['-q', '-sS', '-v', '-x', h.sidecar.proxyUrl, 'https://nowhere.invalid/x']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /< HTTP\/1\.1 502 /, r.stderr);
    assert.match(r.stderr, /x-sts-sidecar-error: ERR_UPSTREAM_UNREACHABLE/i);
    const client = await RawClient.connect(proxyPort);
    client.write('CONNECT nowhere.invalid:443 HTTP/1.1\r\nHost: nowhere.invalid:443\r\n\r\n');
    const reply = await client.take(completeResponse);
    client.close();
    assert.match(reply, /^HTTP\/1\.1 502 /);
    assert.match(reply, /\r\nx-sts-sidecar-error: ERR_UPSTREAM_UNREACHABLE\r\n/);
    assert.deepEqual(delta(before, await connectCounts(h)), { unreachable: 2 });
  });

  it('item 21: a routed https destination on a closed port (127.0.0.1:443) gets 502 ERR_UPSTREAM_UNREACHABLE', async (t) => {
    if (!(await tls443Closed)) return t.skip('something listens on 127.0.0.1:443 here');
    const before = await connectCounts(h);
    const { status, socket, head } = await openTunnel(proxyPort, '127.0.0.1:443');
    socket.destroy();
    assert.equal(status, 502);
    assert.match(head, /"x-sts-sidecar-error":"ERR_UPSTREAM_UNREACHABLE"/);
    assert.deepEqual(delta(before, await connectCounts(h)), { unreachable: 1 });
  });

  it('item 21: a closed port an explicit-port route names: plain HTTP in the tunnel is still served (200 is owed to it); TLS is closed, counted once as unreachable', async () => {
    const before = await connectCounts(h);
    const http = await openTunnel(proxyPort, `127.0.0.1:${closed}`);
    assert.equal(http.status, 200);
    const served = await new Promise<string>((resolve, reject) => {
      http.socket.write(`GET /inside HTTP/1.1\r\nHost: 127.0.0.1:${closed}\r\nConnection: close\r\n\r\n`);
      let text = '';
      http.socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      http.socket.once('close', () => resolve(text));
      http.socket.once('error', reject);
    });
    assert.match(served, /^HTTP\/1\.1 200 /);
    assert.equal(plain.requests.at(-1)!.url, '/inside');
    assert.equal(plain.requests.at(-1)!.headers.authorization, bearer((await h.sidecar.tokens.getToken('closed-port')).accessToken));

    const viaTls = await openTunnel(proxyPort, `127.0.0.1:${closed}`);
    assert.equal(viaTls.status, 200);
    const failure = await new Promise<string>((resolve) => {
      const c = tlsConnect({ socket: viaTls.socket, servername: 'localhost', rejectUnauthorized: false });
      c.once('secureConnect', () => resolve('handshake completed'));
      c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    assert.equal(failure, 'ECONNRESET');
    assert.deepEqual(delta(before, await connectCounts(h)), { http: 1, unreachable: 1 });
  });

  it('item 21: a reachable routed https destination is spliced over the connection dialled before the 200; counted once', async () => {
    let connections = 0;
    const count = () => void (connections += 1);
    tls.server.on('connection', count);
    try {
      const before = await connectCounts(h);
      const r = await runClient('curl', ['-q', '-sS', '--cacert', upstreamCa, '-x', h.sidecar.proxyUrl, `${tls.url}/spliced`]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { url: '/spliced', authorization: null, tls: true });
      assert.equal(connections, 1, 'one connection to the destination: the one dialled before the 200');
      assert.deepEqual(delta(before, await connectCounts(h)), { not_intercepted: 1 });
    } finally {
      tls.server.off('connection', count);
    }
  });

  /** The warn lines the sidecar logged for intercepted handshakes on `route`. */
  const handshakeLogs = (route: string) =>
    parsedLogs(h.logs).filter((l) => l['route'] === route && /TLS with the app failed on an intercepted tunnel/.test(String(l['msg'])));

  it('item 22: openssl s_client -alpn h3: logged as no common ALPN protocol, not as an untrusted CA', async () => {
    // Issue 12: h2 and http/1.1 are both served now; h3 is an ALPN the sidecar does not speak on TCP.
    const r = await runClient('openssl', ['s_client', '-proxy', `127.0.0.1:${proxyPort}`, '-connect', 'payments.internal:443', '-servername', 'payments.internal', '-alpn', 'h3', '-CAfile', sidecarCa]);
    assert.match(r.stdout + r.stderr, /no application protocol/i);
    const line = await eventually(() => handshakeLogs('payments').find((l) => l['reason'] === 'no_common_alpn'), { what: 'the log line' });
    assert.equal(line['code'], 'ERR_SSL_NO_APPLICATION_PROTOCOL');
    assert.equal(line['level'], 'warn');
    assert.doesNotMatch(String(line['msg']), /trust the interception CA/);
    assert.match(String(line['msg']), /ALPN/);
  });

  it('item 22: a node:tls client that trusts the CA but offers only spdy/3.1 gets no_application_protocol; logged as no common ALPN protocol', async () => {
    const { status, socket } = await openTunnel(proxyPort, 'ledger.internal:443');
    assert.equal(status, 200);
    const ca = await readFile(sidecarCa, 'utf8');
    const code = await new Promise<string>((resolve) => {
      const c = tlsConnect({ socket, servername: 'ledger.internal', ca, ALPNProtocols: ['spdy/3.1'] });
      c.once('secureConnect', () => resolve('handshake completed'));
      c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    assert.equal(code, 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
    await eventually(() => handshakeLogs('ledger').find((l) => l['reason'] === 'no_common_alpn'), { what: 'the log line' });
  });

  it('item 22: curl that does not trust the interception CA: logged as the app refusing the certificate, with the CA hint', async () => {
    const r = await runClient('curl', ['-q', '-sS', '-x', h.sidecar.proxyUrl, 'https://payments.internal/untrusted']);
    assert.equal(r.code, 60, r.stderr);
    const line = await eventually(() => handshakeLogs('payments').find((l) => l['reason'] === 'certificate_refused'), { what: 'the log line' });
    assert.equal(line['code'], 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA');
    assert.match(String(line['msg']), /trust the interception CA/);
  });

  it('item 22: a node:tls client that does not trust the CA hangs up without an alert: logged as closed during the handshake', async () => {
    const { status, socket } = await openTunnel(proxyPort, 'ledger.internal:443');
    assert.equal(status, 200);
    const code = await new Promise<string>((resolve) => {
      const c = tlsConnect({ socket, servername: 'ledger.internal' });
      c.once('secureConnect', () => resolve('handshake completed'));
      c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    assert.equal(code, 'SELF_SIGNED_CERT_IN_CHAIN', 'the sidecar sends its CA after the leaf');
    await eventually(() => handshakeLogs('ledger').find((l) => l['reason'] === 'closed_during_handshake'), { what: 'the log line' });
  });
});

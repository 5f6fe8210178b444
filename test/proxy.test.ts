/**
 * The reverse proxy end to end: real STS, real upstreams, real clients (curl, node:http,
 * undici), all on 127.0.0.1.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { request as httpRequest, createServer } from 'node:http';
import { connect } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { startDevSts, type DevSts } from '../src/devsts/index.js';
import { eventually } from './helpers/eventually.js';
import { startFakeSts } from './helpers/fake-sts.js';
import { closeAfter, startHarness, startUpstream, TOKEN_TYPE_ACCESS, type SidecarHarness, type TestUpstream } from './helpers/harness.js';

const run = promisify(execFile);

function seedConfig(stsUrl: string, upstreamUrl: string, route: Record<string, unknown> = {}) {
  return {
    subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
    sts: { url: stsUrl },
    routes: [{ name: 'walrus', host: 'walrus.internal', listen: '127.0.0.1:0', upstream: upstreamUrl, audience: 'walrus', ...route }],
  };
}

/** The seed's http_server: only `Authorization: Bearer iamthewalrus` gets in. */
function walrusOnly(req: { headers: Record<string, unknown> }, res: import('node:http').ServerResponse) {
  if (req.headers['authorization'] === 'Bearer iamthewalrus') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  } else {
    res.writeHead(401, { 'content-type': 'text/plain' });
    res.end('denied');
  }
}

describe('reverse proxy with the seed STS (iamtheeggman -> iamthewalrus)', () => {
  let sts: DevSts;
  let upstream: TestUpstream;
  let h: SidecarHarness;
  before(async () => {
    sts = await startDevSts();
    upstream = await startUpstream(walrusOnly);
    h = await startHarness(seedConfig(sts.tokenUrl, upstream.url));
  });
  after(async () => {
    await h.close();
    await upstream.close();
    await sts.close();
  });

  it('curl through the dedicated listener reaches the upstream with the exchanged token', async () => {
    const { stdout } = await run('curl', ['-s', '-w', '\n%{http_code}', `${h.sidecar.routeUrls['walrus']}/hello`]);
    assert.equal(stdout, 'ok\n200');
    const last = upstream.requests.at(-1)!;
    assert.equal(last.headers.authorization, 'Bearer iamthewalrus');
    assert.equal(last.url, '/hello');
  });

  it('curl through the shared listener routes by Host', async () => {
    const { stdout } = await run('curl', ['-s', '-w', '\n%{http_code}', '-H', 'Host: walrus.internal', `${h.sidecar.proxyUrl}/x?q=1`]);
    assert.equal(stdout, 'ok\n200');
    assert.equal(upstream.requests.at(-1)!.url, '/x?q=1');
  });

  it('the token was exchanged once and then served from the cache', () => {
    assert.equal(sts.stats.exchangesIssued, 1);
  });

  it('a Host that no route names gets a 404 JSON error and nothing is forwarded', async () => {
    const before = upstream.requests.length;
    const res = await request(`${h.sidecar.proxyUrl}/`, { headers: { host: 'evil.example' } });
    assert.equal(res.statusCode, 404);
    const body = (await res.body.json()) as Record<string, unknown>;
    assert.equal(body['code'], 'ERR_ROUTE_NOT_FOUND');
    assert.equal(body['route'], null);
    assert.equal(typeof body['error'], 'string');
    assert.equal(upstream.requests.length, before);
  });

  it('RFC 9110 7.6.1: hop-by-hop fields, fields named in Connection and Proxy-* are not forwarded; the app Authorization is replaced', async () => {
    const port = Number(new URL(h.sidecar.routeUrls['walrus']!).port);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/hop',
          headers: {
            // A client naming `authorization` in Connection must not strip the injected token.
            connection: 'keep-alive, x-hop-secret, authorization',
            'x-hop-secret': 'must-not-pass',
            'keep-alive': 'timeout=5',
            te: 'trailers',
            'proxy-authorization': 'Basic c2VjcmV0OnNlY3JldA==',
            'proxy-connection': 'keep-alive',
            authorization: 'Bearer app-own-token',
            'x-kept': 'yes',
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 200);
    const seen = upstream.requests.at(-1)!.headers;
    assert.equal(seen.authorization, 'Bearer iamthewalrus');
    assert.equal(seen['x-kept'], 'yes');
    for (const name of ['x-hop-secret', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection']) {
      assert.equal(seen[name], undefined, `${name} was forwarded`);
    }
    assert.equal(seen.host, new URL(upstream.url).host);
  });
});

describe('reverse proxy behaviour', () => {
  it('streams large request and response bodies both ways', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startDevSts());
    const big = Buffer.alloc(8 * 1024 * 1024, 'a');
    const upstream = own(await startUpstream((req, res) => {
      if (req.method === 'POST') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ size: req.body.length, sha256: createHash('sha256').update(req.body).digest('hex') }));
      } else {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(big);
      }
    }));
    const h = own(await startHarness(seedConfig(sts.tokenUrl, upstream.url)));
    const body = Buffer.alloc(5 * 1024 * 1024 + 7, 'b');
    const posted = await request(`${h.sidecar.routeUrls['walrus']}/upload`, { method: 'POST', body });
    assert.equal(posted.statusCode, 200);
    assert.deepEqual(await posted.body.json(), { size: body.length, sha256: createHash('sha256').update(body).digest('hex') });
    const got = await request(`${h.sidecar.routeUrls['walrus']}/download`);
    const received = Buffer.from(await got.body.arrayBuffer());
    assert.equal(received.length, big.length);
    assert.ok(received.equals(big));
  });

  it('curl uploads with Expect: 100-continue and with chunked encoding are streamed through', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startDevSts());
    const upstream = own(
      await startUpstream((req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ size: req.body.length, te: req.headers['transfer-encoding'] ?? null, auth: req.headers.authorization }));
      }),
    );
    const h = own(await startHarness(seedConfig(sts.tokenUrl, upstream.url)));
    const dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-upload-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'body.bin');
    await writeFile(file, Buffer.alloc(3 * 1024 * 1024, 'z'));
    const url = `${h.sidecar.routeUrls['walrus']}/upload`;
    // curl sends Expect: 100-continue for bodies over 1 MiB.
    const expect = await run('curl', ['-s', '-v', '--data-binary', `@${file}`, url]);
    assert.match(expect.stderr, /Expect: 100-continue/);
    assert.deepEqual(JSON.parse(expect.stdout), { size: 3 * 1024 * 1024, te: null, auth: 'Bearer iamthewalrus' });
    const chunked = await run('curl', ['-s', '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${file}`, url]);
    assert.deepEqual(JSON.parse(chunked.stdout), { size: 3 * 1024 * 1024, te: 'chunked', auth: 'Bearer iamthewalrus' });
  });

  it('authorization.replaceExisting: false forwards the app credential untouched and exchanges nothing', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = own(await startUpstream());
    const h = own(await startHarness(
      { ...seedConfig(sts.tokenUrl, upstream.url, { lazy: true, authorization: { replaceExisting: false } }) },
      { waitForTokens: false },
    ));
    const res = await request(`${h.sidecar.routeUrls['walrus']}/`, { headers: { authorization: 'Bearer app-token' } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(upstream.requests.at(-1)!.headers.authorization, 'Bearer app-token');
    assert.equal(sts.requests.length, 0);
  });

  it('a custom header name and scheme carry the token', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const upstream = own(await startUpstream());
    const h = own(await startHarness(seedConfig(sts.tokenUrl, upstream.url, { authorization: { header: 'X-Api-Token', scheme: '' } })));
    const res = await request(`${h.sidecar.routeUrls['walrus']}/`, { headers: { authorization: 'Basic kept' } });
    await res.body.dump();
    const seen = upstream.requests.at(-1)!.headers;
    assert.equal(seen['x-api-token'], sts.issued[0]);
    assert.equal(seen.authorization, 'Basic kept');
  });

  it('an upstream 401 drops the token, exchanges again and retries an idempotent request once', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    // The upstream accepts only tokens in this set: the first token counts as revoked.
    const accepted = new Set<string>();
    const upstream = own(await startUpstream((req, res) => {
      if (sts.issued[1]) accepted.add(`Bearer ${sts.issued[1]}`);
      const ok = accepted.has(String(req.headers.authorization));
      res.writeHead(ok ? 200 : 401, { 'content-type': 'text/plain' });
      res.end(ok ? 'fresh token accepted' : 'revoked');
    }));
    const h = own(await startHarness(seedConfig(sts.tokenUrl, upstream.url)));
    const res = await request(`${h.sidecar.routeUrls['walrus']}/`);
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'fresh token accepted');
    assert.equal(sts.issued.length, 2);
    assert.deepEqual(upstream.requests.map((r) => r.headers.authorization), [`Bearer ${sts.issued[0]}`, `Bearer ${sts.issued[1]}`]);

    // Revoke everything: a request with a body is not retried, the 401 reaches the app.
    sts.issued.length = 0;
    accepted.clear();
    const before = upstream.requests.length;
    const posted = await request(`${h.sidecar.routeUrls['walrus']}/`, { method: 'POST', body: 'data' });
    assert.equal(posted.statusCode, 401);
    await posted.body.dump();
    assert.equal(upstream.requests.length, before + 1);
    assert.equal(sts.issued.length, 0);
  });

  it('an unreachable upstream gives 502 ERR_UPSTREAM_UNREACHABLE; a silent one 504 ERR_UPSTREAM_TIMEOUT', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const closed = own(await startUpstream());
    await closed.close();
    const silent = createServer(() => {}); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      silent.closeAllConnections();
      silent.close();
    });
    const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const h = own(await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      routes: [
        { name: 'gone', host: 'gone.internal', upstream: closed.url },
        { name: 'slow', host: 'slow.internal', upstream: silentUrl, upstreamTimeoutSeconds: 0.3 },
      ],
    }));
    const gone = await request(`${h.sidecar.proxyUrl}/`, { headers: { host: 'gone.internal' } });
    assert.equal(gone.statusCode, 502);
    assert.deepEqual(
      { code: ((await gone.body.json()) as Record<string, unknown>)['code'] },
      { code: 'ERR_UPSTREAM_UNREACHABLE' },
    );
    const slow = await request(`${h.sidecar.proxyUrl}/`, { headers: { host: 'slow.internal' } });
    assert.equal(slow.statusCode, 504);
    const body = (await slow.body.json()) as Record<string, unknown>;
    assert.equal(body['code'], 'ERR_UPSTREAM_TIMEOUT');
    assert.equal(body['route'], 'slow');
  });

  it('when the STS refuses, the app gets 503 {error, code, route} and nothing is forwarded', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startDevSts());
    const upstream = own(await startUpstream());
    const h = own(await startHarness(
      {
        subjectToken: { value: 'not-the-eggman', type: TOKEN_TYPE_ACCESS },
        sts: { url: sts.tokenUrl },
        routes: [{ name: 'walrus', listen: '127.0.0.1:0', upstream: upstream.url }],
      },
      { waitForTokens: false },
    ));
    const res = await request(`${h.sidecar.routeUrls['walrus']}/`);
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['content-type'], 'application/json');
    const body = (await res.body.json()) as Record<string, unknown>;
    assert.equal(body['code'], 'ERR_TOKEN_UNAVAILABLE');
    assert.equal(body['route'], 'walrus');
    assert.equal(body['cause'], 'ERR_STS_OAUTH_ERROR');
    assert.equal(body['stsError'], 'invalid_grant');
    assert.equal(typeof body['error'], 'string');
    assert.ok(!JSON.stringify(body).includes('not-the-eggman'));
    assert.equal(upstream.requests.length, 0);
  });

  it('passes a WebSocket-style Upgrade through with the token in the handshake', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startDevSts());
    const upstream = createServer();
    let seenAuth: string | undefined;
    upstream.on('upgrade', (req, socket) => {
      seenAuth = req.headers.authorization;
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
      socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    t.after(() => upstream.close());
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const h = own(await startHarness(seedConfig(sts.tokenUrl, upstreamUrl)));
    const { port } = new URL(h.sidecar.routeUrls['walrus']!);
    const socket = connect(Number(port), '127.0.0.1');
    t.after(() => socket.destroy());
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nAuthorization: Bearer app\r\n\r\n');
    const arrived = (text: string) => eventually(() => Buffer.concat(received).toString().includes(text), { timeoutMs: 3000 }).catch(() => {});
    await arrived('\r\n\r\n');
    assert.match(Buffer.concat(received).toString(), /^HTTP\/1\.1 101/);
    received.length = 0;
    socket.write('ping');
    await arrived('echo:ping');
    assert.equal(Buffer.concat(received).toString(), 'echo:ping');
    assert.equal(seenAuth, 'Bearer iamthewalrus');

    // Shutdown must not wait forever on an open tunnel (node:http forgets upgraded sockets).
    const closed = new Promise((resolve) => socket.once('close', resolve));
    await h.sidecar.close(100);
    await closed;
  });

  it('pathPrefix routes on segment boundaries, longest prefix first', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const a = own(await startUpstream());
    const b = own(await startUpstream());
    const h = own(await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      routes: [
        { name: 'api', host: 'svc.internal', pathPrefix: '/api', upstream: a.url },
        { name: 'api-v2', host: 'svc.internal', pathPrefix: '/api/v2', upstream: b.url },
      ],
    }));
    const status = async (path: string) => {
      const res = await request(`${h.sidecar.proxyUrl}${path}`, { headers: { host: 'SVC.internal:15001' } });
      await res.body.dump();
      return res.statusCode;
    };
    assert.equal(await status('/api/orders'), 200);
    assert.equal(await status('/api/v2/orders'), 200);
    assert.equal(await status('/api?x=1'), 200);
    assert.equal(await status('/apix'), 404);
    assert.deepEqual(a.requests.map((r) => r.url), ['/api/orders', '/api?x=1']);
    assert.deepEqual(b.requests.map((r) => r.url), ['/api/v2/orders']);
  });
});

describe('single flight', () => {
  it('200 concurrent requests on a cold cache cause exactly one exchange', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts({ delayMs: 200 }));
    const upstream = own(await startUpstream());
    const h = own(await startHarness(
      {
        subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
        sts: { url: sts.tokenUrl },
        routes: [{ name: 'cold', listen: '127.0.0.1:0', upstream: upstream.url, lazy: true }],
      },
      { waitForTokens: false },
    ));
    const agent = own(new Agent({ connections: 200 }));
    const url = `${h.sidecar.routeUrls['cold']}/`;
    const statuses = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const res = await request(url, { dispatcher: agent });
        await res.body.dump();
        return res.statusCode;
      }),
    );
    assert.deepEqual(new Set(statuses), new Set([200]));
    assert.equal(sts.requests.length, 1);
    assert.equal(upstream.requests.length, 200);
    assert.ok(upstream.requests.every((r) => r.headers.authorization === `Bearer ${sts.issued[0]}`));
  });

  it('a client that disconnects does not abort the shared exchange', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts({ delayMs: 300 }));
    const upstream = own(await startUpstream());
    const h = own(await startHarness(
      {
        subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
        sts: { url: sts.tokenUrl },
        routes: [{ name: 'cold', listen: '127.0.0.1:0', upstream: upstream.url, lazy: true }],
      },
      { waitForTokens: false },
    ));
    const url = `${h.sidecar.routeUrls['cold']}/`;
    const impatient = request(url, { signal: AbortSignal.timeout(50) }).catch((err: Error) => err);
    const patient = request(url);
    assert.ok((await impatient) instanceof Error);
    const res = await patient;
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(sts.requests.length, 1);
    // The abandoned request was never forwarded.
    assert.equal(upstream.requests.length, 1);
  });
});

describe('shutdown', () => {
  it('close() lets an in-flight request finish, fails readiness, then stops', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startDevSts());
    const upstream = own(
      await startUpstream((_req, res) => {
        setTimeout(() => {
          res.writeHead(200);
          res.end('slow but complete');
        }, 400);
      }),
    );
    const h = own(await startHarness(seedConfig(sts.tokenUrl, upstream.url)));
    // Its own pool, closed once the answer is read: a keep-alive connection left idle in the global pool
    // would hold close() for the whole drain time (src/proxy/listen.ts closes idle sockets only at the start).
    const client = new Agent();
    const inFlight = request(`${h.sidecar.routeUrls['walrus']}/slow`, { dispatcher: client });
    await eventually(() => upstream.requests.length === 1, { what: 'the request to reach the upstream' });
    const closing = h.sidecar.close(5000);
    const ready = await request(`${h.sidecar.adminUrl}/readyz`).then(
      async (r) => ((await r.body.json()) as { shuttingDown: boolean }).shuttingDown,
      () => 'admin closed',
    );
    assert.equal(ready, true);
    const res = await inFlight;
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'slow but complete');
    await client.close();
    await closing;
    await assert.rejects(request(`${h.sidecar.routeUrls['walrus']}/`), /ECONNREFUSED/);
  });
});

/**
 * The token cache over time, against a real (programmable) STS: refresh-ahead, outages,
 * recovery, and subject-token rotation the way the kubelet does it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { createWorkloadIssuer, startDevSts } from '../src/devsts/index.js';
import { startFakeSts } from './helpers/fake-sts.js';
import { closeAfter, sleep, startHarness, startUpstream, TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT } from './helpers/harness.js';

async function get(url: string): Promise<{ status: number; body: Record<string, unknown>; ms: number }> {
  const started = performance.now();
  const res = await request(url);
  const text = await res.body.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    /* upstream bodies need not be JSON */
  }
  return { status: res.statusCode, body, ms: performance.now() - started };
}

describe('refresh ahead', () => {
  it('tokens with a 2-second lifetime are refreshed ahead: no request waits for a slow STS', async (t) => {
    const own = closeAfter(t);
    // A slow STS makes any request that waited for an exchange obvious (>= 250 ms).
    const sts = own(await startFakeSts({ lifetimeSeconds: 2, delayMs: 250 }));
    const expiredSeen: string[] = [];
    const upstream = own(await startUpstream((req, res) => {
      const token = String(req.headers.authorization).replace(/^Bearer /, '');
      if ((sts.expiry.get(token) ?? 0) <= Date.now()) expiredSeen.push(token);
      res.writeHead(200);
      res.end();
    }));
    const h = own(await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'short', listen: '127.0.0.1:0', upstream: upstream.url }],
    }));
    const url = `${h.sidecar.routeUrls['short']}/`;
    let slowest = 0;
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      const r = await get(url);
      assert.equal(r.status, 200);
      slowest = Math.max(slowest, r.ms);
      await sleep(20);
    }
    assert.ok(sts.issued.length >= 3, `expected refreshes, got ${sts.issued.length} exchanges`);
    const tokensUsed = new Set(upstream.requests.map((r) => r.headers.authorization));
    assert.ok(tokensUsed.size >= 3, `requests used ${tokensUsed.size} distinct tokens`);
    assert.deepEqual(expiredSeen, [], 'an expired token was injected');
    assert.ok(slowest < 200, `a request waited ${slowest.toFixed(0)} ms: it was blocked on the STS`);
    const metrics = await (await request(`${h.sidecar.adminUrl}/metrics`)).body.text();
    assert.doesNotMatch(metrics, /sts_sidecar_token_cache_misses_total\{route="short"\} [1-9]/);
    assert.match(metrics, /sts_sidecar_token_cache_hits_total\{route="short"\} \d+/);
  });
});

describe('STS outage', () => {
  it('serves the cached token until it expires, then fails closed with 503, then recovers', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts({ lifetimeSeconds: 2 }));
    const upstream = own(await startUpstream());
    const h = own(await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl, timeoutSeconds: 1 },
      cache: { retryInitialDelaySeconds: 0.1, retryMaxDelaySeconds: 0.4 },
      routes: [{ name: 'r', listen: '127.0.0.1:0', upstream: upstream.url }],
    }));
    const url = `${h.sidecar.routeUrls['r']}/`;
    assert.equal((await get(url)).status, 200);
    const firstToken = sts.issued[0]!;
    const expiresAt = sts.expiry.get(firstToken)!;
    sts.mode = 'down-503';

    // Until (just before) expiry: still served with the cached token.
    while (Date.now() < expiresAt - 300) {
      const r = await get(url);
      assert.equal(r.status, 200);
      assert.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${firstToken}`);
      await sleep(50);
    }
    const forwardedBefore = upstream.requests.length;
    await sleep(Math.max(0, expiresAt - Date.now()) + 100);

    // After expiry: fail closed, nothing forwarded.
    const refused = await get(url);
    assert.equal(refused.status, 503);
    assert.equal(refused.body['code'], 'ERR_TOKEN_UNAVAILABLE');
    assert.equal(refused.body['cause'], 'ERR_STS_SERVER_ERROR');
    assert.equal(upstream.requests.length, forwardedBefore);
    const ready = await request(`${h.sidecar.adminUrl}/readyz`);
    assert.equal(ready.statusCode, 503);
    await ready.body.dump();
    assert.ok(sts.requests.length >= 3, 'the sidecar kept retrying in the background');

    // Recovery: the background retry (backoff <= 0.4 s) picks the STS up again.
    sts.mode = 'up';
    const deadline = Date.now() + 3000;
    let recovered = await get(url);
    while (recovered.status !== 200 && Date.now() < deadline) {
      await sleep(50);
      recovered = await get(url);
    }
    assert.equal(recovered.status, 200);
    assert.notEqual(upstream.requests.at(-1)!.headers.authorization, `Bearer ${firstToken}`);
  });

  it('an STS that resets connections is reported as ERR_STS_UNREACHABLE, and /readyz says not ready', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    sts.mode = 'down-reset';
    const upstream = own(await startUpstream());
    const h = own(await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'r', listen: '127.0.0.1:0', upstream: upstream.url }],
    }));
    const r = await get(`${h.sidecar.routeUrls['r']}/`);
    assert.equal(r.status, 503);
    assert.equal(r.body['cause'], 'ERR_STS_UNREACHABLE');
    const ready = await request(`${h.sidecar.adminUrl}/readyz`);
    assert.equal(ready.statusCode, 503);
    const body = (await ready.body.json()) as { ready: boolean; routes: Array<Record<string, unknown>> };
    assert.equal(body.ready, false);
    assert.equal(body.routes[0]!['lastErrorCode'], 'ERR_STS_UNREACHABLE');
    assert.equal(upstream.requests.length, 0);
  });
});

/** Lays files out the way the kubelet does for projected volumes: data dir + `..data` symlink. */
async function kubeletWrite(dir: string, files: Record<string, string>, generation: number): Promise<void> {
  const dataDir = `..2026_11_22_00_00_0${generation}.${process.pid}`;
  await mkdir(join(dir, dataDir));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, dataDir, name), content);
  await symlink(dataDir, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data')); // the atomic swap
  for (const name of Object.keys(files)) {
    await symlink(join('..data', name), join(dir, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  if (generation > 1) await rm(join(dir, `..2026_11_22_00_00_0${generation - 1}.${process.pid}`), { recursive: true });
}

describe('subject token', () => {
  it('a token rotated by a kubelet-style ..data symlink swap is picked up', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startDevSts({
      staticRules: [
        { subjectToken: 'subject-one', issuedToken: 'issued-for-one', lifetimeSeconds: 3600 },
        { subjectToken: 'subject-two', issuedToken: 'issued-for-two', lifetimeSeconds: 3600 },
      ],
    }));
    const upstream = own(await startUpstream());
    const dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-kubelet-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await kubeletWrite(dir, { token: 'subject-one\n' }, 1);
    const h = own(await startHarness({
      subjectToken: { file: join(dir, 'token'), type: TOKEN_TYPE_ACCESS, pollIntervalSeconds: 0.2 },
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'r', listen: '127.0.0.1:0', upstream: upstream.url }],
    }));
    const url = `${h.sidecar.routeUrls['r']}/`;
    assert.equal((await get(url)).status, 200);
    assert.equal(upstream.requests.at(-1)!.headers.authorization, 'Bearer issued-for-one');

    await kubeletWrite(dir, { token: 'subject-two\n' }, 2);
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      await get(url);
      if (upstream.requests.at(-1)!.headers.authorization === 'Bearer issued-for-two') break;
      await sleep(50);
    }
    assert.equal(upstream.requests.at(-1)!.headers.authorization, 'Bearer issued-for-two');
    assert.equal(sts.stats.exchangesIssued, 2);
  });

  it('a JWT subject token past its own exp is never sent to the STS', async (t) => {
    const own = closeAfter(t);
    const issuer = await createWorkloadIssuer({ issuer: 'https://issuer.test' });
    const sts = own(await startDevSts({ trustedIssuers: [{ issuer: issuer.issuer, jwks: issuer.jwks }] }));
    const upstream = own(await startUpstream());
    const expired = await issuer.mint({ sub: 'workload', aud: 'sts', expiresInSeconds: -60 });
    const h = own(await startHarness(
      {
        subjectToken: { value: expired, type: TOKEN_TYPE_JWT },
        sts: { url: sts.tokenUrl },
        routes: [{ name: 'r', listen: '127.0.0.1:0', upstream: upstream.url }],
      },
      { waitForTokens: true },
    ));
    const r = await get(`${h.sidecar.routeUrls['r']}/`);
    assert.equal(r.status, 503);
    assert.equal(r.body['cause'], 'ERR_SUBJECT_TOKEN_EXPIRED');
    assert.equal(sts.stats.tokenRequests, 0);
    assert.equal(upstream.requests.length, 0);
  });
});

/**
 * The token cache over time: refresh-ahead, outages, recovery, and subject-token rotation
 * the way the kubelet does it. Refresh-ahead and the outage run on a fake clock (seconds of
 * refreshes and backoff in milliseconds); the rest runs end to end against a real loopback
 * STS, where real timers and file watching matter.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { createTokenProvider, type TokenProviderOptions } from '../src/cache/token-provider.js';
import { createWorkloadIssuer, startDevSts } from '../src/devsts/index.js';
import { TokenUnavailableError } from '../src/errors.js';
import { settled, staticSubject, stsOnClock, valueOf, type StsOnClock } from './helpers/cache-on-clock.js';
import { createFakeClock, type FakeClock } from './helpers/fake-clock.js';
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

/** One eager route on the fake clock, with the config's defaults unless `cache` says otherwise. */
function cacheOnClock(clock: FakeClock, sts: StsOnClock, route: string, cache: Partial<TokenProviderOptions> = {}) {
  const seen = { hits: 0, misses: 0 };
  const provider = createTokenProvider({
    routes: [{ name: route, lazy: false, params: {} }],
    subjectTokens: staticSubject('iamtheeggman'),
    exchange: sts.exchange,
    refreshBeforeExpiryRatio: 0.25,
    expirySkewMs: 5000,
    retryInitialDelayMs: 1000,
    retryMaxDelayMs: 30_000,
    maxEntries: 1000,
    observer: { cacheHit: () => void seen.hits++, cacheMiss: () => void seen.misses++ },
    now: clock.now,
    timers: clock.timers,
    ...cache,
  });
  return { provider, seen };
}

describe('refresh ahead (fake clock)', () => {
  it('tokens with a 2-second lifetime are refreshed ahead: no request waits for a slow STS', async (t) => {
    const clock = createFakeClock();
    // A slow STS makes any request that waited for an exchange obvious (>= 250 ms).
    const sts = stsOnClock(clock, { lifetimeSeconds: 2, delayMs: 250 });
    const { provider, seen } = cacheOnClock(clock, sts, 'short');
    t.after(() => provider.close());
    await valueOf(clock, provider.warmUp());
    const expiredSeen: string[] = [];
    const tokensUsed = new Set<string>();
    let slowest = 0;
    const until = clock.now() + 5000;
    while (clock.now() < until) {
      const { value: token, ms } = await valueOf(clock, provider.getToken('short'));
      if ((sts.expiry.get(token.accessToken) ?? 0) <= clock.now()) expiredSeen.push(token.accessToken);
      tokensUsed.add(token.accessToken);
      slowest = Math.max(slowest, ms);
      await clock.advance(20);
    }
    assert.ok(sts.issued.length >= 3, `expected refreshes, got ${sts.issued.length} exchanges`);
    assert.ok(tokensUsed.size >= 3, `requests used ${tokensUsed.size} distinct tokens`);
    assert.deepEqual(expiredSeen, [], 'an expired token was served');
    assert.ok(slowest < 200, `a request waited ${slowest} ms: it was blocked on the STS`);
    assert.equal(seen.misses, 0);
    assert.ok(seen.hits > 0);
  });
});

describe('refresh ahead (Node timers, end to end)', () => {
  it('an eager route\'s 1-second token is refreshed by the timer before it expires, with no request asking', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts({ lifetimeSeconds: 1 }));
    const upstream = own(await startUpstream());
    const h = own(await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'short', listen: '127.0.0.1:0', upstream: upstream.url }],
    }));
    const first = sts.issued[0]!;
    for (const deadline = Date.now() + 3000; sts.issued.length < 2; await sleep(20)) {
      assert.ok(Date.now() < deadline, 'the refresh timer never fired');
    }
    assert.ok(Date.now() < sts.expiry.get(first)!, 'refreshed only after the token expired');
    assert.equal((await get(`${h.sidecar.routeUrls['short']}/`)).status, 200);
    assert.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${sts.issued[1]}`);
    const metrics = await (await request(`${h.sidecar.adminUrl}/metrics`)).body.text();
    assert.doesNotMatch(metrics, /sts_sidecar_token_cache_misses_total\{route="short"\} [1-9]/);
  });
});

describe('STS outage', () => {
  it('serves the cached token until it expires, then fails closed with 503, then recovers (fake clock)', async (t) => {
    const clock = createFakeClock();
    const sts = stsOnClock(clock, { lifetimeSeconds: 2 });
    const { provider } = cacheOnClock(clock, sts, 'r', { retryInitialDelayMs: 100, retryMaxDelayMs: 400 });
    t.after(() => provider.close());
    await valueOf(clock, provider.warmUp());
    const firstToken = (await valueOf(clock, provider.getToken('r'))).value.accessToken;
    assert.equal(firstToken, sts.issued[0]);
    const expiresAt = sts.expiry.get(firstToken)!;
    sts.mode = 'down-503';

    // Until (just before) expiry: still served with the cached token.
    while (clock.now() < expiresAt - 300) {
      assert.equal((await valueOf(clock, provider.getToken('r'))).value.accessToken, firstToken);
      await clock.advance(50);
    }
    await clock.advance(Math.max(0, expiresAt - clock.now()) + 100);

    // After expiry: fail closed. What the proxy answers (503, code, cause) is read from these fields.
    const { result } = await settled(clock, provider.getToken('r'));
    assert.equal(result.status, 'rejected');
    const refused = (result as PromiseRejectedResult).reason as TokenUnavailableError;
    assert.ok(refused instanceof TokenUnavailableError);
    assert.equal(refused.status, 503);
    assert.equal(refused.code, 'ERR_TOKEN_UNAVAILABLE');
    assert.equal(refused.rootCode, 'ERR_STS_SERVER_ERROR');
    assert.equal(provider.status()[0]!.valid, false, '/readyz answers 503');
    assert.ok(sts.requests.length >= 3, 'the cache kept retrying in the background');

    // Recovery: the background retry (backoff <= 0.4 s) picks the STS up again.
    sts.mode = 'up';
    const deadline = clock.now() + 3000;
    let recovered = await settled(clock, provider.getToken('r'));
    while (recovered.result.status !== 'fulfilled' && clock.now() < deadline) {
      await clock.advance(50);
      recovered = await settled(clock, provider.getToken('r'));
    }
    assert.equal(recovered.result.status, 'fulfilled');
    assert.notEqual((recovered.result as PromiseFulfilledResult<{ accessToken: string }>).value.accessToken, firstToken);
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

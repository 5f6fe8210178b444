/**
 * Issue 10 items 4, 5 and 13: the token cache under long lifetimes, 401 storms and a
 * subject-token rotation the STS refuses. The cache runs on a fake clock (days in
 * milliseconds); each item also has a test against real loopback servers.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createTokenProvider, MAX_TIMER_DELAY_MS, type TokenProviderOptions } from '../src/cache/token-provider.js';
import { describeToken, type SubjectTokenProvider } from '../src/credentials/subject-token.js';
import { StsError } from '../src/errors.js';
import { MAX_TOKEN_LIFETIME_MS, processExchangeResponse } from '../src/sts/exchange-response.js';
import { createFakeClock, type FakeClock } from './helpers/fake-clock.js';
import { eventually, sleep } from './helpers/eventually.js';
import { issueToken, oauthError, startFakeSts } from './helpers/fake-sts.js';
import { closeAfter, startHarness, startUpstream, TOKEN_TYPE_ACCESS } from './helpers/harness.js';
import { send, tempDir } from './helpers/loopback.js';

const DAY_MS = 24 * 3600 * 1000;

function staticSubject(value = 'the-workload-subject-token'): SubjectTokenProvider {
  const token = describeToken(value, TOKEN_TYPE_ACCESS);
  return { description: 'test', current: () => token, onChange: () => {}, close: () => {} };
}

/** A compact JWT (unsigned: the cache only reads `exp`). */
function jwtExpiringAt(epochSeconds: number): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ sub: 'workload', exp: epochSeconds })}.sig`;
}

/**
 * An RFC 8693 success body with `expires_in` written as given (JSON text, so `1e400` and
 * `null` reach the parser as an STS would send them); undefined leaves the member out.
 */
function replyWith(accessToken: string, expiresInJson: string | undefined): string {
  const expires = expiresInJson === undefined ? '' : `,"expires_in":${expiresInJson}`;
  return `{"access_token":"${accessToken}","issued_token_type":"${TOKEN_TYPE_ACCESS}","token_type":"Bearer"${expires}}`;
}

/** One eager route whose exchanges go through the real response validation, on the fake clock. */
function cacheOnClock(clock: FakeClock, reply: (n: number) => string, extra: Partial<TokenProviderOptions> = {}) {
  let exchanges = 0;
  const provider = createTokenProvider({
    routes: [{ name: 'api', lazy: false, params: { audience: ['api'] } }],
    subjectTokens: staticSubject(),
    exchange: async () => processExchangeResponse(200, reply(++exchanges), clock.now()),
    refreshBeforeExpiryRatio: 0.25,
    expirySkewMs: 5000,
    retryInitialDelayMs: 1000,
    retryMaxDelayMs: 30_000,
    maxEntries: 100,
    now: clock.now,
    random: () => 0.5,
    timers: clock.timers,
    ...extra,
  });
  return { provider, exchanges: () => exchanges };
}

describe('issue 10 item 4: long-lived tokens refresh once, not in a loop (fake clock)', () => {
  const tenYearsAhead = Math.floor(Date.now() / 1000) + 10 * 365 * 24 * 3600;
  const cases: Array<{ name: string; token: (n: number) => string; expiresIn: string | undefined; lifetimeMs: number }> = [
    { name: 'expires_in: 7776000 (a 90-day token)', token: (n) => `opaque-90d-${n}-xxxxxxxx`, expiresIn: '7776000', lifetimeMs: 90 * DAY_MS },
    { name: 'expires_in: 1e308', token: (n) => `opaque-1e308-${n}-xxxxxxxx`, expiresIn: '1e308', lifetimeMs: MAX_TOKEN_LIFETIME_MS },
    { name: 'expires_in: 1e400 (Infinity once parsed)', token: (n) => `opaque-inf-${n}-xxxxxxxx`, expiresIn: '1e400', lifetimeMs: MAX_TOKEN_LIFETIME_MS },
    { name: 'a JWT whose exp is ten years ahead, no expires_in', token: () => jwtExpiringAt(tenYearsAhead), expiresIn: undefined, lifetimeMs: MAX_TOKEN_LIFETIME_MS },
    { name: 'a JWT whose exp is ten years ahead, expires_in: null', token: () => jwtExpiringAt(tenYearsAhead), expiresIn: 'null', lifetimeMs: MAX_TOKEN_LIFETIME_MS },
  ];
  for (const c of cases) {
    test(`${c.name}: one exchange, refreshed when a quarter of its (clamped) lifetime is left`, async (t) => {
      const clock = createFakeClock(Date.now(), { maxFirings: 5000 });
      const { provider, exchanges } = cacheOnClock(clock, (n) => replyWith(c.token(n), c.expiresIn));
      t.after(() => provider.close());
      await provider.warmUp();
      const token = await provider.getToken('api');
      assert.ok(token.expiresAt - token.issuedAt <= MAX_TOKEN_LIFETIME_MS, 'the cache lifetime is clamped');

      const refreshAt = 0.75 * c.lifetimeMs;
      await clock.advance(refreshAt - DAY_MS);
      assert.equal(exchanges(), 1, `exchanges in ${(refreshAt - DAY_MS) / DAY_MS} days`);
      assert.equal((await provider.getToken('api')).accessToken, token.accessToken);
      await clock.advance(2 * DAY_MS);
      assert.equal(exchanges(), 2, 'refreshed once, ahead of expiry');
      assert.ok(clock.longestDelayAsked <= MAX_TIMER_DELAY_MS, `a timer was armed for ${clock.longestDelayAsked} ms`);
    });
  }

  test('no delay the cache arms exceeds 2^31-1 ms, even a retry backoff configured absurdly long', async (t) => {
    const clock = createFakeClock(Date.now(), { maxFirings: 5000 });
    let calls = 0;
    const { provider } = cacheOnClock(clock, () => replyWith('unused-xxxxxxxx', '60'), {
      retryInitialDelayMs: 1e12,
      retryMaxDelayMs: 1e12,
      exchange: async () => {
        calls++;
        throw new StsError('ERR_STS_UNREACHABLE', 'down');
      },
    });
    t.after(() => provider.close());
    await provider.warmUp();
    await clock.advance(60 * DAY_MS);
    assert.equal(calls, 1, 'the retry waits its (long) backoff instead of firing after 1 ms');
    assert.ok(clock.longestDelayAsked <= MAX_TIMER_DELAY_MS);
  });

  test('RFC 6749 5.1: expires_in must be a non-negative number; null reads as absent', () => {
    const at = Date.now();
    const rejected = (body: string) =>
      assert.throws(() => processExchangeResponse(200, body, at), (e: unknown) => (e as StsError).code === 'ERR_STS_RESPONSE_INVALID', body);
    rejected(replyWith('opaque-token-xxxxxxxx', '-1'));
    rejected(replyWith('opaque-token-xxxxxxxx', '"soon"'));
    rejected(replyWith('opaque-token-xxxxxxxx', 'true'));
    rejected(replyWith('opaque-token-xxxxxxxx', '{}'));
    // null with nothing else to go by: no lifetime at all, as when the member is missing.
    rejected(replyWith('opaque-token-xxxxxxxx', 'null'));
    assert.equal(processExchangeResponse(200, replyWith('opaque-token-xxxxxxxx', '"3600"'), at).expiresAt, at + 3_600_000);
    assert.equal(processExchangeResponse(200, replyWith('opaque-token-xxxxxxxx', '1e308'), at).expiresAt, at + MAX_TOKEN_LIFETIME_MS);
  });

  test('end to end: a real STS issuing 90-day tokens sees one exchange', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts({ lifetimeSeconds: 7_776_000 }));
    const upstream = own(await startUpstream());
    const h = own(await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'long', listen: '127.0.0.1:0', upstream: upstream.url }],
    }));
    // Before the fix, Node fired the 67-day refresh timer after 1 ms: thousands of exchanges a second.
    // A fixed wait on purpose: nothing (no second exchange) may happen during it.
    await sleep(750);
    const reply = await send(`${h.sidecar.routeUrls['long']}/`);
    assert.equal(reply.status, 200);
    assert.equal(upstream.requests.at(-1)?.headers.authorization, `Bearer ${sts.issued[0]}`);
    assert.equal(sts.issued.length, 1, `${sts.issued.length} exchanges`);
  });
});

describe('issue 10 item 5: upstream 401s drop a token at most once per route and window', () => {
  test('100 invalidations of successive tokens in one window: one drop, one exchange (fake clock)', async (t) => {
    const clock = createFakeClock();
    const dropped: string[] = [];
    const refused: string[] = [];
    const { provider, exchanges } = cacheOnClock(clock, (n) => replyWith(`opaque-${n}-xxxxxxxx`, '3600'), {
      reexchangeAfter401IntervalMs: 5000,
      observer: { invalidated: (r) => dropped.push(r), invalidationRefused: (r) => refused.push(r) },
    });
    t.after(() => provider.close());
    await provider.warmUp();
    const first = (await provider.getToken('api')).accessToken;

    const answers: boolean[] = [];
    for (let i = 0; i < 100; i++) {
      const token = await provider.getToken('api');
      answers.push(provider.invalidate('api', token.accessToken));
    }
    assert.deepEqual(answers, [true, ...Array<boolean>(99).fill(false)], 'only the first 401 in the window may retry');
    assert.equal(exchanges(), 2, 'the initial exchange and one after the 401');
    assert.equal(dropped.length, 1);
    assert.equal(refused.length, 99);
    const current = (await provider.getToken('api')).accessToken;
    assert.notEqual(current, first);

    // A 401 for a token already replaced: retry with the current one, nothing dropped.
    assert.equal(provider.invalidate('api', first), true);
    assert.equal((await provider.getToken('api')).accessToken, current);
    assert.equal(exchanges(), 2);

    // The next window allows one more drop.
    await clock.advance(5000);
    assert.equal(provider.invalidate('api', current), true);
    assert.notEqual((await provider.getToken('api')).accessToken, current);
    assert.equal(exchanges(), 3);
  });
});

describe('issue 10 item 13: a subject-token rotation the STS refuses', () => {
  test('the route keeps its still-valid token until it expires, then fails closed', async (t) => {
    const own = closeAfter(t);
    const dir = await tempDir();
    t.after(() => dir.cleanup());
    const before = 'subject-before-rotation';
    const after = 'subject-after-rotation';
    const lifetimeSeconds = 3;
    const issued: Array<{ token: string; expiresAt: number }> = [];
    const subjectsSeen: string[] = [];
    // A real STS that accepts only the first subject token (as one would after a bad rotation).
    const sts = own(await startFakeSts({
      lifetimeSeconds,
      makeToken: (n) => {
        const token = `granted-${n}-xxxxxxxx`;
        issued.push({ token, expiresAt: Date.now() + lifetimeSeconds * 1000 });
        return token;
      },
      answer: (res, request, self) => {
        const subject = request.form.get('subject_token') ?? '';
        subjectsSeen.push(subject);
        if (subject !== before) return oauthError('invalid_grant', 'subject token not recognised')(res, request, self);
        return issueToken(res, request, self);
      },
    }));
    const upstream = own(await startUpstream());
    const subjectFile = join(dir.path, 'token');
    await writeFile(subjectFile, before);
    const h = own(await startHarness({
      subjectToken: { file: subjectFile, type: TOKEN_TYPE_ACCESS, pollIntervalSeconds: 0.05 },
      sts: { url: sts.tokenUrl },
      cache: { retryInitialDelaySeconds: 0.05, retryMaxDelaySeconds: 0.2 },
      routes: [{ name: 'api', listen: '127.0.0.1:0', upstream: upstream.url }],
    }));
    const url = `${h.sidecar.routeUrls['api']}/`;
    assert.equal((await send(url)).status, 200);
    const granted = issued.at(-1)!;

    await writeFile(subjectFile, after);
    await eventually(() => subjectsSeen.includes(after), { what: 'the sidecar to exchange the rotated subject token' });
    // Refused at the STS, yet the previous token is valid: served, and /readyz agrees.
    const served = await send(url);
    assert.equal(served.status, 200, served.text);
    assert.equal(upstream.requests.at(-1)?.headers.authorization, `Bearer ${granted.token}`);
    assert.equal((await send(`${h.sidecar.adminUrl}/readyz`)).status, 200);

    // Until it expires; then fail closed, and readiness says so.
    const refused = await eventually(
      async () => {
        const r = await send(url);
        if (r.status !== 200) return r;
        assert.equal(upstream.requests.at(-1)?.headers.authorization, `Bearer ${granted.token}`);
        assert.ok(Date.now() <= granted.expiresAt, 'an expired token was injected');
        return undefined;
      },
      { timeoutMs: 10_000, intervalMs: 20, what: 'the route to fail closed' },
    );
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('x-sts-sidecar-error'), 'ERR_TOKEN_UNAVAILABLE');
    assert.equal(issued.length, 1, 'no token was issued for the refused subject');
    assert.equal((await send(`${h.sidecar.adminUrl}/readyz`)).status, 503);
  });
});

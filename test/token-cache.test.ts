/**
 * The token cache module by module (issue 11 item 1): backoff, the bounded refresh schedule,
 * the entry table, single flight, the RFC 8705 binding decorator, the exchange-result label
 * and the failure model, then the TokenProvider facade on a fake clock. All in milliseconds.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { exchangeResult } from '../src/admin/exchange-result.js';
import { backoffDelay } from '../src/cache/backoff.js';
import type { CachedToken } from '../src/cache/cached-token.js';
import { EntryTable } from '../src/cache/entries.js';
import { MAX_TIMER_DELAY_MS, RefreshSchedule, refreshPlan } from '../src/cache/refresh-schedule.js';
import { singleFlight } from '../src/cache/single-flight.js';
import { createTokenProvider, type TokenProviderOptions } from '../src/cache/token-provider.js';
import { describeToken } from '../src/credentials/subject-token.js';
import { SidecarError, StsError, StsOAuthError, SubjectTokenError, TokenUnavailableError } from '../src/errors.js';
import { describeTokenFailure } from '../src/endpoints/reply.js';
import { createRedactor } from '../src/log/redact.js';
import { errorBody } from '../src/proxy/respond.js';
import { withCertificateBinding } from '../src/sts/certificate-binding.js';
import type { IssuedToken } from '../src/sts/exchange-response.js';
import { MAX_TOKEN_LIFETIME_MS } from '../src/sts/exchange-response.js';
import type { IdentityGeneration } from '../src/tls/identity.js';
import { settled, staticSubject, stsOnClock, valueOf, type StsOnClock } from './helpers/cache-on-clock.js';
import { createFakeClock, type FakeClock } from './helpers/fake-clock.js';
import { TOKEN_TYPE_ACCESS } from './helpers/harness.js';

const T0 = Date.UTC(2030, 0, 1);

function token(accessToken: string, issuedAt: number, lifetimeMs: number): CachedToken {
  return { accessToken, issuedTokenType: TOKEN_TYPE_ACCESS, tokenType: 'Bearer', issuedAt, expiresAt: issuedAt + lifetimeMs, scope: undefined, identity: undefined };
}

describe('backoff', () => {
  const policy = { initialDelayMs: 1000, maxDelayMs: 30_000 };
  test('doubles per failure, with equal jitter: between half and all of the ceiling', () => {
    assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelay(n, policy, () => 0)), [500, 1000, 2000, 4000]);
    assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelay(n, policy, () => 1)), [1000, 2000, 4000, 8000]);
  });
  test('capped at maxDelayMs, and finite after any number of failures', () => {
    assert.equal(backoffDelay(10, policy, () => 1), 30_000);
    assert.equal(backoffDelay(1_000_000, { initialDelayMs: 1, maxDelayMs: Infinity }, () => 1), 2 ** 30);
  });
});

describe('refresh schedule', () => {
  test('refresh-ahead: refreshAt leaves the ratio of the lifetime; the skew takes at most 5% of it', () => {
    const plan = refreshPlan(token('t', T0, 100_000), { refreshBeforeExpiryRatio: 0.25, expirySkewMs: 5000 });
    assert.equal(plan.refreshAt, T0 + 75_000);
    assert.equal(plan.usableUntil, T0 + 95_000);
    const short = refreshPlan(token('t', T0, 2000), { refreshBeforeExpiryRatio: 0.25, expirySkewMs: 5000 });
    assert.equal(short.usableUntil, T0 + 1900, 'a 5-second skew must not make a 2-second token unusable');
  });

  test('issue 10 item 4: a lifetime past MAX_TOKEN_LIFETIME_MS (or NaN) is clamped', () => {
    const long = refreshPlan(token('t', T0, 10 * MAX_TOKEN_LIFETIME_MS), { refreshBeforeExpiryRatio: 0.25, expirySkewMs: 0 });
    assert.equal(long.token.expiresAt, T0 + MAX_TOKEN_LIFETIME_MS);
    const nan = refreshPlan({ ...token('t', T0, 0), expiresAt: NaN }, { refreshBeforeExpiryRatio: 0.25, expirySkewMs: 0 });
    assert.equal(nan.token.expiresAt, T0 + MAX_TOKEN_LIFETIME_MS);
  });

  test('a time past Node\'s timer limit is reached in bounded steps, firing once, on time', async () => {
    const clock = createFakeClock(T0);
    const schedule = new RefreshSchedule<string>(clock.now, clock.timers);
    let firedAt: number | undefined;
    const at = T0 + 3 * MAX_TIMER_DELAY_MS + 5;
    schedule.at('owner', at, () => (firedAt = clock.now()));
    await clock.advance(4 * MAX_TIMER_DELAY_MS);
    assert.equal(firedAt, at);
    assert.equal(clock.fired, 4, 'three full-limit steps, then the rest');
    assert.equal(clock.longestDelayAsked, MAX_TIMER_DELAY_MS);
  });

  test('one timer per owner: re-arming replaces, cancel and close stop, nothing is armed after close', async () => {
    const clock = createFakeClock(T0);
    const schedule = new RefreshSchedule<string>(clock.now, clock.timers);
    const fired: string[] = [];
    schedule.at('a', T0 + 100, () => fired.push('a-first'));
    schedule.at('a', T0 + 200, () => fired.push('a-second'));
    schedule.at('b', T0 + 100, () => fired.push('b'));
    schedule.cancel('b');
    await clock.advance(300);
    assert.deepEqual(fired, ['a-second']);
    schedule.at('c', T0 + 400, () => fired.push('c'));
    schedule.close();
    schedule.at('d', T0 + 400, () => fired.push('d'));
    await clock.advance(1000);
    assert.deepEqual(fired, ['a-second']);
  });
});

describe('entries', () => {
  const route = { name: 'api', lazy: false, params: { audience: ['api'] } };
  const other = { name: 'other', lazy: false, params: { audience: ['other'] } };
  const subjectA = describeToken('subject-a', TOKEN_TYPE_ACCESS);
  const subjectB = describeToken('subject-b', TOKEN_TYPE_ACCESS);
  const alice = { thumbprint: 'alice-thumbprint' } as IdentityGeneration;
  const plan = (accessToken: string) => refreshPlan(token(accessToken, T0, 60_000), { refreshBeforeExpiryRatio: 0.25, expirySkewMs: 0 });

  function table(maxEntries = 10) {
    const redactor = createRedactor();
    const dropped: string[] = [];
    return { redactor, dropped, entries: new EntryTable({ routes: [route, other], maxEntries, redactor, dropped: (e) => dropped.push(e.key) }) };
  }

  test('a key per route, subject token and certificate; the same objects find the same entry', () => {
    const { entries } = table();
    const a = entries.lookup(route, subjectA, undefined);
    assert.equal(entries.lookup(route, subjectA, undefined), a);
    assert.notEqual(entries.entryFor(route, subjectB, undefined), a);
    assert.notEqual(entries.entryFor(route, subjectA, alice), a);
    assert.notEqual(entries.entryFor(other, subjectA, undefined), a);
    assert.equal(entries.entryFor(route, describeToken('subject-a', TOKEN_TYPE_ACCESS), undefined), a, 'the key is the digest, not the object');
  });

  test('past maxEntries the least recently used entry goes, never one with an exchange in flight', () => {
    const { entries, dropped } = table(2);
    const oldest = entries.entryFor(route, subjectA, undefined);
    oldest.lastUsed = 1;
    oldest.inflight = new Promise(() => {});
    const middle = entries.entryFor(other, subjectA, undefined);
    middle.lastUsed = 2;
    entries.entryFor(route, subjectB, undefined);
    assert.deepEqual(dropped, [middle.key]);
    assert.ok(entries.holds(oldest) && !entries.holds(middle));
  });

  test('a stored token is registered with the redactor and the route\'s other entries go; discard and drop forget it', () => {
    const { entries, redactor, dropped } = table();
    const before = entries.entryFor(route, subjectA, undefined);
    entries.store(before, plan('token-before-rotation-xxxxxxxx'));
    assert.equal(redactor.scrub('saw token-before-rotation-xxxxxxxx'), 'saw [Redacted]');
    const after = entries.entryFor(route, subjectB, undefined);
    entries.store(after, plan('token-after-rotation-xxxxxxxx'));
    assert.deepEqual(dropped, [before.key], 'the key the route moved away from is obsolete');
    assert.equal(redactor.scrub('token-before-rotation-xxxxxxxx'), 'token-before-rotation-xxxxxxxx', 'forgotten with its entry');
    entries.discard(after);
    assert.equal(after.token, undefined);
    assert.equal(redactor.scrub('token-after-rotation-xxxxxxxx'), 'token-after-rotation-xxxxxxxx');
  });

  test('issue 10 item 13: previous() finds the route\'s still-usable token from another key, same certificate only', () => {
    const { entries } = table();
    const old = entries.entryFor(route, subjectA, undefined);
    const fresh = entries.entryFor(route, subjectB, undefined);
    const otherCert = entries.entryFor(route, subjectA, alice);
    Object.assign(old, { token: token('old', T0, 60_000), usableUntil: T0 + 60_000 });
    Object.assign(otherCert, { token: token('bound', T0, 120_000), usableUntil: T0 + 120_000 });
    assert.equal(entries.previous(fresh, T0 + 1000), old);
    assert.equal(entries.previous(fresh, T0 + 60_000), undefined, 'not once it is unusable');
  });
});

describe('single flight', () => {
  test('callers share the run in flight; it is cleared once settled, success or failure', async () => {
    const holder: { inflight: Promise<number> | undefined } = { inflight: undefined };
    let runs = 0;
    let finish!: (n: number) => void;
    const start = () => new Promise<number>((resolve) => ((finish = resolve), runs++));
    const first = singleFlight(holder, start);
    const second = singleFlight(holder, start);
    assert.equal(first, second);
    finish(7);
    assert.equal(await second, 7);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(holder.inflight, undefined);
    await assert.rejects(singleFlight(holder, () => (runs++, Promise.reject(new Error('down')))));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(holder.inflight, undefined);
    assert.equal(runs, 2);
  });
});

describe('RFC 8705 3.1: the certificate-binding decorator', () => {
  const thumbprint = Buffer.alloc(32, 1).toString('base64url');
  const identity = { thumbprint } as IdentityGeneration;
  const jwtBoundTo = (x5t: string) => {
    const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    return `${part({ alg: 'none' })}.${part({ sub: 'w', cnf: { 'x5t#S256': x5t } })}.sig`;
  };
  const issued = (accessToken: string): IssuedToken => ({ accessToken, issuedTokenType: TOKEN_TYPE_ACCESS, tokenType: 'Bearer', issuedAt: T0, expiresAt: T0 + 60_000, scope: undefined });
  const other = Buffer.alloc(32, 2).toString('base64url');
  const params = { subjectToken: 'subject', subjectTokenType: TOKEN_TYPE_ACCESS };

  function decorated(tokens: string[]) {
    const mismatches: string[] = [];
    let calls = 0;
    const exchange = withCertificateBinding(async () => issued(tokens[calls++]!), { bindingMismatch: (route) => mismatches.push(route) });
    return { exchange, mismatches, calls: () => calls };
  }

  test('a token bound to another certificate is discarded and the exchange asked once more', async () => {
    const { exchange, mismatches, calls } = decorated([jwtBoundTo(other), jwtBoundTo(thumbprint)]);
    assert.equal((await exchange(params, identity, 'api')).accessToken, jwtBoundTo(thumbprint));
    assert.equal(calls(), 2);
    assert.deepEqual(mismatches, ['api']);
  });

  test('a second mismatch fails closed with ERR_STS_TOKEN_BINDING_MISMATCH', async () => {
    const { exchange, mismatches, calls } = decorated([jwtBoundTo(other), jwtBoundTo(other), jwtBoundTo(thumbprint)]);
    await assert.rejects(exchange(params, identity, 'api'), (err: unknown) => err instanceof StsError && err.code === 'ERR_STS_TOKEN_BINDING_MISMATCH');
    assert.equal(calls(), 2);
    assert.deepEqual(mismatches, ['api', 'api']);
  });

  test('opaque and unbound tokens pass, and so does anything without an identity', async () => {
    assert.equal((await decorated(['opaque-token']).exchange(params, identity, 'api')).accessToken, 'opaque-token');
    const unchecked = decorated([jwtBoundTo(other)]);
    assert.equal((await unchecked.exchange(params, undefined, 'api')).accessToken, jwtBoundTo(other));
    assert.deepEqual(unchecked.mismatches, []);
  });
});

describe('failure model', () => {
  test('the exchange-result label: closed set, anything foreign is `error`', () => {
    assert.equal(exchangeResult(), 'success');
    assert.equal(exchangeResult(new StsOAuthError('invalid_grant', undefined, 400)), 'oauth_error');
    assert.equal(exchangeResult(new StsError('ERR_STS_RESPONSE_TOO_LARGE', 'x')), 'invalid_response');
    assert.equal(exchangeResult(new StsError('ERR_STS_TIMEOUT', 'x')), 'timeout');
    assert.equal(exchangeResult(new StsError('ERR_STS_UNREACHABLE', 'x')), 'unreachable');
    assert.equal(exchangeResult(new StsError('ERR_STS_SERVER_ERROR', 'x')), 'server_error');
    assert.equal(exchangeResult(new SubjectTokenError('ERR_SUBJECT_TOKEN_EXPIRED', 'x')), 'subject_token_error');
    assert.equal(exchangeResult(new StsError('ERR_STS_TOKEN_BINDING_MISMATCH', 'x')), 'binding_mismatch');
    assert.equal(exchangeResult(new Error('bug')), 'error');
  });

  test('TokenUnavailableError carries the root code and the STS\'s OAuth error as fields', () => {
    const refused = new TokenUnavailableError('api', new StsOAuthError('invalid_target', 'no such audience', 400));
    assert.equal(refused.code, 'ERR_TOKEN_UNAVAILABLE');
    assert.equal(refused.rootCode, 'ERR_STS_OAUTH_ERROR');
    assert.equal(refused.stsError, 'invalid_target');
    assert.equal(refused.stsErrorDescription, 'no such audience');
    const down = new TokenUnavailableError('api', new StsError('ERR_STS_TIMEOUT', 'slow'));
    assert.deepEqual([down.rootCode, down.stsError, down.stsErrorDescription], ['ERR_STS_TIMEOUT', undefined, undefined]);
    const bug = new TokenUnavailableError('api', new Error('unknown route'));
    assert.equal(bug.rootCode, 'ERR_TOKEN_UNAVAILABLE', 'nothing of ours below: its own code');
  });

  test('what the proxy and the endpoints answer is built from those fields', () => {
    const refused = new TokenUnavailableError('api', new StsOAuthError('invalid_target', 'no such audience', 400));
    assert.deepEqual(JSON.parse(errorBody(refused, 'api')), {
      error: refused.message,
      code: 'ERR_TOKEN_UNAVAILABLE',
      route: 'api',
      cause: 'ERR_STS_OAUTH_ERROR',
      stsError: 'invalid_target',
    });
    assert.deepEqual(describeTokenFailure(refused, 'api'), {
      status: 400,
      error: 'invalid_target',
      description: 'the STS refused the exchange for route api (invalid_target: no such audience)',
      code: 'ERR_STS_OAUTH_ERROR',
    });
    const down = new TokenUnavailableError('api', new StsError('ERR_STS_UNREACHABLE', 'down'));
    assert.equal(describeTokenFailure(down, 'api').code, 'ERR_STS_UNREACHABLE');
    assert.equal(describeTokenFailure(new Error('bug'), 'api').status, 500);
    assert.ok(!(new Error('x') instanceof SidecarError));
  });
});

describe('TokenProvider on a fake clock', () => {
  function provider(clock: FakeClock, sts: StsOnClock, extra: Partial<TokenProviderOptions> = {}) {
    const events: string[] = [];
    const tokens = createTokenProvider({
      routes: [
        { name: 'eager', lazy: false, params: { audience: ['eager'] } },
        { name: 'lazy', lazy: true, params: { audience: ['lazy'] } },
      ],
      subjectTokens: staticSubject(),
      exchange: sts.exchange,
      refreshBeforeExpiryRatio: 0.25,
      expirySkewMs: 5000,
      retryInitialDelayMs: 1000,
      retryMaxDelayMs: 30_000,
      maxEntries: 100,
      observer: {
        exchanged: (route, _seconds, error) => events.push(`${route}:${exchangeResult(error)}`),
        invalidated: (route) => events.push(`${route}:invalidated`),
        invalidationRefused: (route) => events.push(`${route}:refused`),
      },
      now: clock.now,
      random: () => 0.5,
      timers: clock.timers,
      ...extra,
    });
    return { tokens, events };
  }

  test('single flight: concurrent requests share one exchange, told the route it is for', async (t) => {
    const clock = createFakeClock(T0);
    const sts = stsOnClock(clock, { delayMs: 100 });
    const { tokens } = provider(clock, sts);
    t.after(() => tokens.close());
    const asked = Array.from({ length: 5 }, () => tokens.getToken('lazy'));
    const got = await Promise.all(asked.map((p) => valueOf(clock, p)));
    assert.equal(sts.requests.length, 1);
    assert.equal(new Set(got.map((g) => g.value.accessToken)).size, 1);
    assert.equal(sts.requests[0]!.route, 'lazy', 'the exchange is told its route (for the binding decorator)');
  });

  test('backoff: failures retry on the eager route\'s timer with growing delays; requests fail fast meanwhile', async (t) => {
    const clock = createFakeClock(T0);
    const sts = stsOnClock(clock);
    sts.mode = 'down-503';
    const { tokens, events } = provider(clock, sts);
    t.after(() => tokens.close());
    await valueOf(clock, tokens.warmUp());
    assert.deepEqual(events, ['eager:server_error']);
    // random() = 0.5: delays of 750, 1500, 3000 ms.
    await clock.advance(749);
    assert.equal(sts.requests.length, 1);
    const { result, ms } = await settled(clock, tokens.getToken('eager'));
    assert.equal(result.status, 'rejected');
    assert.equal(ms, 0, 'inside the backoff a request fails closed at once');
    assert.equal(sts.requests.length, 1, 'and asks the STS nothing');
    await clock.advance(1);
    assert.equal(sts.requests.length, 2);
    await clock.advance(1500 + 3000);
    assert.equal(sts.requests.length, 4);
    assert.equal(tokens.status()[0]!.consecutiveFailures, 4);
    assert.equal(tokens.status()[0]!.lastErrorCode, 'ERR_STS_SERVER_ERROR');
    sts.mode = 'up';
    await clock.advance(6000);
    assert.equal(tokens.status()[0]!.valid, true);
    assert.equal(tokens.status()[0]!.consecutiveFailures, 0);
  });

  test('an idle lazy route is refreshed once after its last use, then lapses and is forgotten', async (t) => {
    const clock = createFakeClock(T0);
    const sts = stsOnClock(clock, { lifetimeSeconds: 100 });
    const { tokens } = provider(clock, sts);
    t.after(() => tokens.close());
    await valueOf(clock, tokens.getToken('lazy'));
    await clock.advance(1000 * 1000);
    assert.equal(sts.requests.filter((r) => r.route === 'lazy').length, 2, 'used since its token was issued: one refresh, then none');
    assert.equal(tokens.status()[1]!.expiresInSeconds, undefined, 'forgotten once unusable');
  });

  test('a lazy route in use is refreshed ahead, like an eager one', async (t) => {
    const clock = createFakeClock(T0);
    const sts = stsOnClock(clock, { lifetimeSeconds: 100 });
    const { tokens } = provider(clock, sts);
    t.after(() => tokens.close());
    const first = (await valueOf(clock, tokens.getToken('lazy'))).value;
    await clock.advance(10_000);
    assert.equal((await valueOf(clock, tokens.getToken('lazy'))).value, first);
    await clock.advance(70_000);
    assert.equal(sts.requests.filter((r) => r.route === 'lazy').length, 2);
    assert.notEqual((await valueOf(clock, tokens.getToken('lazy'))).value, first, 'served the refreshed token');
    await clock.advance(80_000);
    assert.equal(sts.requests.filter((r) => r.route === 'lazy').length, 3);
  });

  test('issue 10 item 5: a 401 drops the token once per window; inside it the drop is refused', async (t) => {
    const clock = createFakeClock(T0);
    const sts = stsOnClock(clock);
    const { tokens, events } = provider(clock, sts, { reexchangeAfter401IntervalMs: 5000 });
    t.after(() => tokens.close());
    const first = (await valueOf(clock, tokens.getToken('lazy'))).value.accessToken;
    assert.equal(tokens.invalidate('lazy', first), true);
    assert.equal(tokens.invalidate('lazy', first), true, 'already gone: the caller may retry');
    const second = (await valueOf(clock, tokens.getToken('lazy'))).value.accessToken;
    assert.notEqual(second, first);
    assert.equal(tokens.invalidate('lazy', second), false);
    await clock.advance(5000);
    assert.equal(tokens.invalidate('lazy', second), true);
    assert.deepEqual(events.filter((e) => !e.endsWith('success')), ['lazy:invalidated', 'lazy:refused', 'lazy:invalidated']);
  });

  test('close stops every timer: no refresh afterwards', async () => {
    const clock = createFakeClock(T0);
    const sts = stsOnClock(clock, { lifetimeSeconds: 10 });
    const { tokens } = provider(clock, sts);
    await valueOf(clock, tokens.warmUp());
    tokens.close();
    await clock.advance(3600 * 1000);
    assert.equal(sts.requests.length, 1);
  });

  test('an unknown route or a subject token that cannot be read fail with TokenUnavailableError', async () => {
    const clock = createFakeClock(T0);
    const sts = stsOnClock(clock);
    const { tokens } = provider(clock, sts, {
      subjectTokens: { description: 'test', current: () => { throw new SubjectTokenError('ERR_SUBJECT_TOKEN_UNAVAILABLE', 'gone'); }, onChange: () => {}, close: () => {} },
    });
    await assert.rejects(tokens.getToken('nope'), (err: unknown) => err instanceof TokenUnavailableError && err.rootCode === 'ERR_TOKEN_UNAVAILABLE');
    await assert.rejects(tokens.getToken('lazy'), (err: unknown) => err instanceof TokenUnavailableError && err.rootCode === 'ERR_SUBJECT_TOKEN_UNAVAILABLE');
    tokens.close();
  });
});

/**
 * The token cache on a fake clock (test/helpers/fake-clock.ts): an in-process STS whose
 * answers take fake time and go through the real response validation, a static subject
 * token, and a way to await a cache call while the clock moves.
 */
import { describeToken, type SubjectTokenProvider } from '../../src/credentials/subject-token.js';
import type { Exchange } from '../../src/sts/client.js';
import type { ExchangeParams } from '../../src/sts/exchange-request.js';
import { processExchangeResponse } from '../../src/sts/exchange-response.js';
import type { FakeClock } from './fake-clock.js';
import { TOKEN_TYPE_ACCESS } from './harness.js';

export function staticSubject(value = 'the-workload-subject-token', type = TOKEN_TYPE_ACCESS): SubjectTokenProvider {
  const token = describeToken(value, type);
  return { description: 'test', current: () => token, onChange: () => {}, close: () => {} };
}

/** up: a valid reply; down-503: HTTP 503, as test/helpers/fake-sts.ts answers. */
export type StsOnClockMode = 'up' | 'down-503';

export interface StsOnClock {
  readonly exchange: Exchange;
  /** Exchanges answered with a token. */
  readonly issued: string[];
  /** Every exchange asked for, with the route it was for. */
  readonly requests: Array<{ readonly params: ExchangeParams; readonly route: string }>;
  /** When each issued token expires (fake epoch ms), by token. */
  readonly expiry: Map<string, number>;
  mode: StsOnClockMode;
  delayMs: number;
  lifetimeSeconds: number;
  /** Builds the n-th issued token (default: an opaque `issued-n-xxx` string). */
  makeToken: ((n: number) => string) | undefined;
}

export function stsOnClock(clock: FakeClock, options: { delayMs?: number; lifetimeSeconds?: number } = {}): StsOnClock {
  const sts: StsOnClock = {
    issued: [],
    requests: [],
    expiry: new Map(),
    mode: 'up',
    delayMs: options.delayMs ?? 0,
    lifetimeSeconds: options.lifetimeSeconds ?? 3600,
    makeToken: undefined,
    async exchange(params, _identity, route) {
      // As the real client: the lifetime counts from when the STS was asked.
      const requestedAt = clock.now();
      sts.requests.push({ params, route });
      if (sts.delayMs > 0) await new Promise<void>((resolve) => clock.timers.setTimeout(resolve, sts.delayMs));
      if (sts.mode === 'down-503') return processExchangeResponse(503, 'unavailable', requestedAt);
      const token = sts.makeToken?.(sts.issued.length + 1) ?? `issued-${sts.issued.length + 1}-${'x'.repeat(24)}`;
      sts.issued.push(token);
      sts.expiry.set(token, clock.now() + sts.lifetimeSeconds * 1000);
      const body = { access_token: token, issued_token_type: TOKEN_TYPE_ACCESS, token_type: 'Bearer', expires_in: sts.lifetimeSeconds };
      return processExchangeResponse(200, JSON.stringify(body), requestedAt);
    },
  };
  return sts;
}

export interface Settled<T> {
  readonly result: PromiseSettledResult<T>;
  /** Fake milliseconds it took. */
  readonly ms: number;
}

/**
 * Awaits a cache call, moving the clock 10 ms at a time while it is pending (an exchange
 * answers only when fake time passes); `ms` says how long it waited.
 */
export async function settled<T>(clock: FakeClock, promise: Promise<T>, limitMs = 60_000): Promise<Settled<T>> {
  let result: PromiseSettledResult<T> | undefined;
  promise.then(
    (value) => (result = { status: 'fulfilled', value }),
    (reason: unknown) => (result = { status: 'rejected', reason }),
  );
  const started = clock.now();
  await clock.advance(0);
  while (result === undefined) {
    if (clock.now() - started > limitMs) throw new Error(`still pending after ${limitMs} fake ms`);
    await clock.advance(10);
  }
  return { result, ms: clock.now() - started };
}

/** The value of a cache call that must succeed, moving the clock while it is pending. */
export async function valueOf<T>(clock: FakeClock, promise: Promise<T>): Promise<{ value: T; ms: number }> {
  const { result, ms } = await settled(clock, promise);
  if (result.status === 'rejected') throw result.reason;
  return { value: result.value, ms };
}

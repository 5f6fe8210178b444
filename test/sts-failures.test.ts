/**
 * What the app sees when the STS misbehaves, through the running sidecar: a 503 with a
 * stable code, nothing forwarded, and the sidecar keeps serving and recovers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startFakeSts, type FakeStsMode } from './helpers/fake-sts.js';
import { eventually, sleep } from './helpers/eventually.js';
import { closeAfter, parsedLogs, startHarness, startUpstream, TOKEN_TYPE_ACCESS } from './helpers/harness.js';

const CASES: Array<[FakeStsMode, string]> = [
  ['not-json', 'ERR_STS_RESPONSE_INVALID'],
  ['no-access-token', 'ERR_STS_RESPONSE_INVALID'],
  ['huge', 'ERR_STS_RESPONSE_TOO_LARGE'],
  ['hang', 'ERR_STS_TIMEOUT'],
  ['down-503', 'ERR_STS_SERVER_ERROR'],
  ['down-reset', 'ERR_STS_UNREACHABLE'],
];

describe('STS misbehaviour through the sidecar', () => {
  for (const [mode, cause] of CASES) {
    it(`an STS reply of kind "${mode}" gives the app 503 with cause ${cause}; the sidecar recovers`, async (t) => {
      const own = closeAfter(t);
      const sts = own(await startFakeSts());
      sts.mode = mode;
      const upstream = own(await startUpstream());
      const h = own(
        await startHarness(
          {
            subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
            sts: { url: sts.tokenUrl, timeoutSeconds: 0.3 },
            cache: { retryInitialDelaySeconds: 0.05, retryMaxDelaySeconds: 0.1 },
            routes: [{ name: 'r', listen: '127.0.0.1:0', upstream: upstream.url, lazy: true }],
          },
          { waitForTokens: false },
        ),
      );
      const url = `${h.sidecar.routeUrls['r']}/`;
      const res = await request(url);
      assert.equal(res.statusCode, 503);
      const body = (await res.body.json()) as Record<string, unknown>;
      assert.deepEqual([body['code'], body['cause'], body['route']], ['ERR_TOKEN_UNAVAILABLE', cause, 'r']);
      assert.equal(upstream.requests.length, 0);

      // The process keeps serving: the admin port answers and, once the STS behaves, so does the route.
      const health = await request(`${h.sidecar.adminUrl}/healthz`);
      assert.equal(health.statusCode, 200);
      await health.body.dump();
      sts.mode = 'up';
      let status = 0;
      const recovered = async () => {
        const again = await request(url);
        status = again.statusCode;
        await again.body.dump();
        return status === 200;
      };
      await eventually(recovered, { timeoutMs: 2000, intervalMs: 50 }).catch(() => {});
      assert.equal(status, 200);
      assert.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${sts.issued[0]}`);
    });
  }
});

describe('log volume during an outage', () => {
  it('50 refused requests log one "request refused" line, with the suppressed count on the next', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    sts.mode = 'down-503';
    const upstream = own(await startUpstream());
    const h = own(
      await startHarness(
        {
          subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
          sts: { url: sts.tokenUrl },
          cache: { retryInitialDelaySeconds: 10, retryMaxDelaySeconds: 10 },
          routes: [{ name: 'r', listen: '127.0.0.1:0', upstream: upstream.url }],
        },
        { waitForTokens: true },
      ),
    );
    for (let i = 0; i < 50; i++) {
      const res = await request(`${h.sidecar.routeUrls['r']}/`);
      assert.equal(res.statusCode, 503);
      await res.body.dump();
    }
    await sleep(20); // a fixed wait on purpose: no further "request refused" line may follow
    const refused = parsedLogs(h.logs).filter((l) => l['msg'] === 'request refused');
    assert.equal(refused.length, 1);
    assert.equal(refused[0]!['code'], 'ERR_TOKEN_UNAVAILABLE');
    assert.equal(refused[0]!['suppressed'], 0);
  });
});

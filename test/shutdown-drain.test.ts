/**
 * Shutdown drains in-flight requests, and a keep-alive connection whose request finishes during
 * the drain is closed then, not held open until the drain window ends (it only became idle after
 * the drain began, so one look at idle connections when closing starts is not enough).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { startFakeSts } from './helpers/fake-sts.js';
import { startHarness, startUpstream, TOKEN_TYPE_ACCESS } from './helpers/harness.js';

it('a request in flight at shutdown completes, and its kept-alive connection does not hold the drain open', async () => {
  const sts = await startFakeSts();
  const upstream = await startUpstream((_req, res) => void setTimeout(() => res.end('slow'), 300));
  const h = await startHarness({
    subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
    sts: { url: sts.tokenUrl },
    routes: [{ name: 'orders', listen: '127.0.0.1:0', upstream: upstream.url, audience: 'orders' }],
  });
  const agent = new Agent({ keepAliveTimeout: 60_000 });
  try {
    const answer = request(`${h.sidecar.routeUrls['orders']}/x`, { dispatcher: agent });
    await new Promise<void>((resolve) => setTimeout(resolve, 100)); // the request is at the upstream
    const drainMs = 10_000;
    const started = Date.now();
    const closing = h.sidecar.close(drainMs);
    const res = await answer;
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'slow');
    await closing;
    // Far below the 10 s window: the connection was closed once its request was done.
    assert.ok(Date.now() - started < drainMs / 2, `close took ${Date.now() - started} ms`);
  } finally {
    await agent.close();
    await upstream.close();
    await sts.close();
  }
});

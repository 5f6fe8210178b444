/**
 * Shutdown drains in-flight requests, and a keep-alive connection whose request finishes during
 * the drain is closed then, not held open until the drain window ends (it only became idle after
 * the drain began, so one look at idle connections when closing starts is not enough).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { eventually } from './helpers/eventually.js';
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

it('during the drain window readiness fails but listeners keep accepting; the sidecar stops once nothing is in flight (issue 13)', async () => {
  const sts = await startFakeSts();
  const upstream = await startUpstream((req, res) => void setTimeout(() => res.end('done'), req.url === '/slow' ? 400 : 0));
  const h = await startHarness({
    subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
    sts: { url: sts.tokenUrl },
    shutdown: { drainSeconds: 30, idleSeconds: 0.3 },
    routes: [{ name: 'orders', listen: '127.0.0.1:0', upstream: upstream.url, audience: 'orders' }],
  });
  const routeUrl = h.sidecar.routeUrls['orders']!;
  const adminUrl = h.sidecar.adminUrl;
  try {
    const slow = request(`${routeUrl}/slow`);
    await eventually(() => upstream.requests.length === 1, { what: 'the slow request to reach the upstream' });
    const started = Date.now();
    let closed = false;
    const closing = h.sidecar.close().then(() => void (closed = true));

    const ready = await request(`${adminUrl}/readyz`);
    assert.equal(ready.statusCode, 503);
    assert.equal(((await ready.body.json()) as { shuttingDown: boolean }).shuttingDown, true);
    // An app in its own shutdown still calls out: a new connection is accepted and served.
    const late = await request(`${routeUrl}/late`, { dispatcher: new Agent({ pipelining: 0 }) });
    assert.equal(late.statusCode, 200);
    assert.equal(await late.body.text(), 'done');
    assert.equal(closed, false);

    assert.equal((await slow).statusCode, 200);
    await closing;
    // Far below the 30 s window: it stopped once nothing had been in flight for idleSeconds.
    assert.ok(Date.now() - started < 15_000, `close took ${Date.now() - started} ms`);
    await assert.rejects(request(`${routeUrl}/after`), /ECONNREFUSED/);
  } finally {
    await h.sidecar.close(0);
    await upstream.close();
    await sts.close();
  }
});

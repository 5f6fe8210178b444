/**
 * Issue 10 item 12: the local token endpoint hands out only the routes it is meant to serve.
 * A proxied route's token is for its upstream, through the proxy; the endpoint serves it only
 * when tokenEndpoint.routes lists it. By default it serves the token-only routes (no upstream).
 * An unserved route is invisible: asking for its audience is asking for an unknown one.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { configProblems } from './helpers/config-problems.js';
import type { ConfigProblem } from '../src/config/load.js';
import { startUpstream } from './helpers/harness.js';
import { JWT_TYPE, TOKEN_EXCHANGE, startEndpointStack, type EndpointStack } from './helpers/endpoints.js';
import { send, type Reply } from './helpers/loopback.js';

const ORDERS = 'https://orders.internal';
const GCP = 'https://gcp.example';

function ask(stack: EndpointStack, subjectToken: string, params: Record<string, string>): Promise<Reply> {
  return send(`${stack.harness.sidecar.endpointUrls.token!}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, subject_token: subjectToken, subject_token_type: JWT_TYPE, ...params }).toString(),
  });
}

/** A proxied route `orders` and a token-only route `gcp`, with `tokenEndpoint` as given. */
async function stackWith(t: { after(fn: () => unknown): void }, tokenEndpoint: Record<string, unknown>): Promise<EndpointStack> {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const stack = await startEndpointStack(() => ({
    routes: [
      { name: 'orders', host: 'orders.internal', upstream: upstream.url, audience: ORDERS, scope: 'orders.read' },
      { name: 'gcp', audience: GCP, scope: 'cloud' },
    ],
    tokenEndpoint: { listen: '127.0.0.1:0', ...tokenEndpoint },
  }));
  t.after(() => stack.close());
  return stack;
}

describe('issue 10 item 12: a proxied route is not served by the token endpoint unless listed', () => {
  for (const callers of ['loopback', 'pod-token'] as const) {
    test(`callers: ${callers}: the proxied route's audience gets the same invalid_target as an unknown one; token-only routes are served`, async (t) => {
      const stack = await stackWith(t, { callers });
      const subject = stack.podToken;
      const unserved = await ask(stack, subject, { audience: ORDERS });
      const unknown = await ask(stack, subject, { audience: 'https://unknown.internal' });
      assert.equal(unserved.status, 400, unserved.text);
      assert.equal(unserved.body['error'], 'invalid_target');
      assert.deepEqual(unserved.body, unknown.body, 'indistinguishable from a target no route has');
      // Nor by its scope alone, nor as resource.
      assert.equal((await ask(stack, subject, { scope: 'orders.read' })).body['error'], 'invalid_target');
      assert.equal((await ask(stack, subject, { resource: ORDERS })).body['error'], 'invalid_target');
      // The proxied route's token exists (the sidecar holds it for the proxy), it is just not handed out.
      const held = (await stack.harness.sidecar.tokens.getToken('orders')).accessToken;
      assert.ok(!unserved.text.includes(held));
      const served = await ask(stack, subject, { audience: GCP });
      assert.equal(served.status, 200, served.text);
      assert.equal(served.body['access_token'], (await stack.harness.sidecar.tokens.getToken('gcp')).accessToken);
    });
  }

  test('tokenEndpoint.routes lists the proxied route: it is served, by audience and as defaultRoute', async (t) => {
    const stack = await stackWith(t, { callers: 'loopback', routes: ['orders', 'gcp'], defaultRoute: 'orders' });
    const held = (await stack.harness.sidecar.tokens.getToken('orders')).accessToken;
    const reply = await ask(stack, 'any-local-caller', { audience: ORDERS });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.body['access_token'], held);
    assert.equal((await ask(stack, 'any-local-caller', { audience: 'https://unknown.internal' })).body['access_token'], held);
    assert.equal((await ask(stack, 'any-local-caller', { audience: GCP })).body['access_token'], (await stack.harness.sidecar.tokens.getToken('gcp')).accessToken);
  });
});


function config(tokenEndpoint: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    subjectToken: { file: '/var/run/secrets/token' },
    sts: { url: 'https://sts.example.com/token' },
    routes: [
      { name: 'orders', host: 'orders.internal', upstream: 'https://orders.internal' },
      { name: 'gcp', audience: GCP },
    ],
    tokenEndpoint: { listen: '127.0.0.1:15003', ...tokenEndpoint },
    ...extra,
  };
}

describe('issue 10 item 12: tokenEndpoint.routes and defaultRoute in the configuration', () => {
  test('defaultRoute must be a served route: a proxied route unless listed, a route left out of the list', () => {
    const paths = (p: readonly ConfigProblem[]) => p.map((x) => x.path);
    assert.deepEqual(paths(configProblems(config({ defaultRoute: 'orders' }))), ['tokenEndpoint.defaultRoute']);
    assert.match(configProblems(config({ defaultRoute: 'orders' }))[0]!.problem, /tokenEndpoint\.routes/);
    assert.deepEqual(paths(configProblems(config({ routes: ['orders'], defaultRoute: 'gcp' }))), ['tokenEndpoint.defaultRoute']);
    assert.match(configProblems(config({ routes: ['orders'], defaultRoute: 'gcp' }))[0]!.problem, /not in tokenEndpoint\.routes/);
    assert.deepEqual(configProblems(config({ defaultRoute: 'gcp' })), []);
    assert.deepEqual(configProblems(config({ routes: ['orders', 'gcp'], defaultRoute: 'orders' })), []);
  });

  test('every listed name must be a route; a token-only route neither listed nor used by metadata is reported', () => {
    assert.deepEqual(configProblems(config({ routes: ['orders', 'nope'] })).map((p) => p.path), ['tokenEndpoint.routes[1]', 'routes[1].upstream']);
    const viaGce = config(
      { routes: ['orders'] },
      { metadata: { gce: { listen: '127.0.0.1:15004', route: 'gcp', projectId: 'p', serviceAccountEmail: 'a@p.iam.gserviceaccount.com' } } },
    );
    assert.deepEqual(configProblems(viaGce), [], 'the GCE emulation names its route itself');
  });
});

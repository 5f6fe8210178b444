/**
 * Issue 6 building blocks on their own: route selection by RFC 8693 section 2.1 targets
 * and scope, and the pod-token check across a rotation (constant-time, previous token
 * accepted until its own expiry).
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createPodTokenCheck } from '../src/endpoints/caller-check.js';
import { selectRoute, type ServableRoute } from '../src/endpoints/route-selection.js';
import { hostAllowed } from '../src/endpoints/request-guards.js';
import { createWorkloadIssuer } from '../src/devsts/index.js';

const AT = 'urn:ietf:params:oauth:token-type:access_token';
const route = (name: string, targets: string[], scope: string[] = []): ServableRoute => ({ name, targets, scope, requestedTokenType: AT });
const ask = (audience: string[], resource: string[] = [], scope: string[] = []) => ({ audience, resource, scope });

describe('route selection (RFC 8693 2.1 targets, then scope)', () => {
  const orders = route('orders', ['https://orders', 'https://orders/api'], ['orders.read']);
  const ordersAdmin = route('orders-admin', ['https://orders'], ['orders.admin']);
  const gcp = route('gcp', ['//iam.googleapis.com/x'], ['https://www.googleapis.com/auth/cloud-platform']);
  const routes = [orders, ordersAdmin, gcp];

  test('every named target must be among the route’s; audience and resource count as one set', () => {
    assert.equal(selectRoute(routes, ask(['https://orders'], ['https://orders/api']), undefined), orders);
    assert.equal(selectRoute(routes, ask([], ['https://orders/api']), undefined), orders);
    assert.equal(selectRoute(routes, ask(['https://orders', 'https://elsewhere']), undefined), undefined);
  });

  test('among target matches the scope decides, then config order; scope never excludes a target match', () => {
    assert.equal(selectRoute(routes, ask(['https://orders'], [], ['orders.admin']), undefined), ordersAdmin);
    assert.equal(selectRoute(routes, ask(['https://orders']), undefined), orders, 'first in config order');
    assert.equal(selectRoute(routes, ask(['https://orders'], [], ['https://www.googleapis.com/auth/cloud-platform']), undefined), orders, 'grpc-go’s default scope');
  });

  test('no target: the scope alone, else the default route; an unknown target falls to the default too', () => {
    assert.equal(selectRoute(routes, ask([], [], ['https://www.googleapis.com/auth/cloud-platform']), undefined), gcp);
    assert.equal(selectRoute(routes, ask([]), gcp), gcp);
    assert.equal(selectRoute(routes, ask([]), undefined), undefined);
    assert.equal(selectRoute(routes, ask(['https://unknown']), ordersAdmin), ordersAdmin);
  });
});

describe('pod-token caller check', () => {
  function source(initial: string) {
    let value = initial;
    const listeners: Array<() => void> = [];
    return {
      current: () => value,
      onChange: (l: () => void) => void listeners.push(l),
      rotate(next: string) {
        value = next;
        for (const l of listeners) l();
      },
    };
  }

  test('the previous JWT is accepted after a rotation until its own exp, never after', async () => {
    const issuer = createWorkloadIssuer({ alg: 'ES256' });
    const first = await issuer.mint({ sub: 'pod', aud: 'sts', expiresInSeconds: 600 });
    const second = await issuer.mint({ sub: 'pod', aud: 'sts', expiresInSeconds: 3600 });
    let now = Date.now();
    const s = source(first);
    const check = createPodTokenCheck(s, () => now);
    assert.equal(check(first), true);
    assert.equal(check(second), false);
    assert.equal(check(`${first}\n`), true, 'a trailing newline is not part of the token');
    s.rotate(second);
    assert.equal(check(second), true);
    assert.equal(check(first), true, 'the previous token during its lifetime');
    now += 601_000;
    assert.equal(check(first), false, 'not past its exp');
    assert.equal(check(second), true);
  });

  test('a non-JWT previous token gets a bounded grace; the empty string never matches', () => {
    let now = 0;
    const s = source('opaque-token-one');
    const check = createPodTokenCheck(s, () => now);
    s.rotate('opaque-token-two');
    now += 4 * 60_000;
    assert.equal(check('opaque-token-one'), true);
    now += 2 * 60_000;
    assert.equal(check('opaque-token-one'), false);
    assert.equal(check(''), false);
  });
});

describe('DNS rebinding guard', () => {
  test('IP literals and localhost (with or without a port) pass; other names only when listed', () => {
    for (const host of ['127.0.0.1', '127.0.0.1:15003', '[::1]:15003', 'localhost', 'LOCALHOST:1', '169.254.169.254']) assert.equal(hostAllowed(host), true, host);
    for (const host of ['attacker.example', 'attacker.example:15003', '127.0.0.1.nip.io', 'metadata.google.internal']) assert.equal(hostAllowed(host), false, host);
    assert.equal(hostAllowed('metadata.google.internal.:80', new Set(['metadata.google.internal'])), true);
  });
});

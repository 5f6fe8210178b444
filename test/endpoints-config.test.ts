/**
 * Issue 6 configuration: tokenEndpoint and metadata.{gce,azure} parse with their
 * defaults, and every mistake fails at start-up naming its key: listeners that would hand
 * tokens to the network, route names that do not exist, token-only routes nothing serves.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { ConfigValidationError, parseConfig, parseConfigText, type ConfigProblem } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';
import { startSidecar } from '../src/main.js';

const YAML = `
subjectToken: { file: /var/run/secrets/tokens/sts-token }
sts: { url: https://sts.example.com/token }
routes:
  - name: orders
    host: orders.internal
    upstream: https://orders.internal
    audience: https://orders.internal
  - name: gcp                      # token-only: no upstream, served by the endpoints
    audience: //iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k
    scope: https://www.googleapis.com/auth/cloud-platform
  - name: vault
    audience: https://vault.azure.net
tokenEndpoint:
  listen: 127.0.0.1:15003
  routes: [orders, gcp]             # orders is proxied: served here only because it is listed
  defaultRoute: orders
metadata:
  gce:
    listen: 169.254.169.254:80
    route: gcp
    projectId: shop-prod
    numericProjectId: 123456789012
    serviceAccountEmail: orders@shop-prod.iam.gserviceaccount.com
  azure:
    listen: 127.0.0.1:15005
    resources:
      https://vault.azure.net: vault
    clientId: 6a1bcb3e-0f33-4b4e-9d0c-6f4c2f6b2a11
`;

function base(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    subjectToken: { file: '/var/run/secrets/token' },
    sts: { url: 'https://sts.example.com/token' },
    routes: [
      { name: 'orders', host: 'orders.internal', upstream: 'https://orders.internal' },
      { name: 'gcp', audience: 'https://gcp.example' },
    ],
    tokenEndpoint: { listen: '127.0.0.1:15003' },
    ...extra,
  };
}

function problemsOf(input: unknown): readonly ConfigProblem[] {
  try {
    parseConfig(input);
  } catch (err) {
    assert.ok(err instanceof ConfigValidationError, `expected ConfigValidationError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('the configuration should have been rejected');
}

function assertRejectedAt(input: unknown, path: string, message?: RegExp): void {
  const problems = problemsOf(input);
  const hit = problems.find((p) => p.path === path);
  assert.ok(hit, `expected a problem at "${path}", got ${JSON.stringify(problems)}`);
  if (message) assert.match(hit.problem, message);
}

describe('endpoint configuration', () => {
  test('a full YAML example parses, with defaults filled in', () => {
    const c = parseConfigText(YAML);
    assert.deepEqual(c.tokenEndpoint, { listen: { host: '127.0.0.1', port: 15003 }, callers: 'pod-token', routes: ['orders', 'gcp'], defaultRoute: 'orders' });
    assert.equal(c.metadata?.gce?.numericProjectId, '123456789012', 'a YAML number becomes the digits string');
    assert.equal(c.metadata?.gce?.universeDomain, 'googleapis.com');
    assert.deepEqual(c.metadata?.gce?.listen, { host: '169.254.169.254', port: 80 });
    assert.deepEqual(c.metadata?.azure?.resources, { 'https://vault.azure.net': 'vault' });
    assert.equal(c.routes[1]?.upstream, undefined, 'a token-only route');
  });

  test('listeners that hand out tokens stay off the network', () => {
    for (const listen of ['0.0.0.0:15003', '10.1.2.3:15003', '[::]:15003', '169.254.169.254:80']) {
      assertRejectedAt(base({ tokenEndpoint: { listen } }), 'tokenEndpoint.listen', /loopback/);
    }
    for (const listen of ['127.0.0.1:0', 'localhost:15003', '[::1]:15003', ':15003']) {
      assert.doesNotThrow(() => parseConfig(base({ tokenEndpoint: { listen } })), listen);
    }
    const gce = { route: 'gcp', projectId: 'p', serviceAccountEmail: 'a@p.iam.gserviceaccount.com' };
    assertRejectedAt(base({ metadata: { gce: { ...gce, listen: '0.0.0.0:80' } } }), 'metadata.gce.listen', /link-local/);
    assertRejectedAt(base({ metadata: { azure: { listen: '192.168.1.1:80', defaultRoute: 'gcp' } } }), 'metadata.azure.listen');
    assert.doesNotThrow(() => parseConfig(base({ metadata: { gce: { ...gce, listen: '169.254.169.254:80' }, azure: { listen: '169.254.169.254:8080', defaultRoute: 'gcp' } } })));
  });

  test('route names must exist', () => {
    assertRejectedAt(base({ tokenEndpoint: { listen: '127.0.0.1:15003', defaultRoute: 'nope' } }), 'tokenEndpoint.defaultRoute', /no route is named "nope"/);
    const gce = { listen: '127.0.0.1:15004', projectId: 'p', serviceAccountEmail: 'a@p.iam.gserviceaccount.com' };
    assertRejectedAt(base({ metadata: { gce: { ...gce, route: 'nope' } } }), 'metadata.gce.route');
    assertRejectedAt(base({ metadata: { azure: { listen: '127.0.0.1:15005', resources: { 'https://vault.azure.net': 'nope' } } } }), 'metadata.azure.resources.https://vault.azure.net');
    assertRejectedAt(base({ metadata: { azure: { listen: '127.0.0.1:15005', defaultRoute: 'nope' } } }), 'metadata.azure.defaultRoute');
  });

  test('required and malformed keys are named; unknown keys are rejected', () => {
    assertRejectedAt(base({ tokenEndpoint: {} }), 'tokenEndpoint.listen');
    assertRejectedAt(base({ tokenEndpoint: { listen: '127.0.0.1:15003', callers: 'anyone' } }), 'tokenEndpoint.callers');
    assertRejectedAt(base({ tokenEndpoint: { listen: '127.0.0.1:15003', caller: 'loopback' } }), 'tokenEndpoint.caller', /unknown key/);
    assertRejectedAt(base({ metadata: { gce: { listen: '127.0.0.1:15004', route: 'gcp' } } }), 'metadata.gce.projectId');
    assertRejectedAt(base({ metadata: { gce: { listen: '127.0.0.1:15004', route: 'gcp', projectId: 'p', serviceAccountEmail: 'not-an-email' } } }), 'metadata.gce.serviceAccountEmail');
    assertRejectedAt(base({ metadata: { gce: { listen: '127.0.0.1:15004', route: 'gcp', projectId: 'p', serviceAccountEmail: 'a@b', numericProjectId: '12ab' } } }), 'metadata.gce.numericProjectId');
    assertRejectedAt(base({ metadata: { azure: { listen: '127.0.0.1:15005' } } }), 'metadata.azure.resources', /defaultRoute/);
    assertRejectedAt(base({ metadata: { aws: {} } }), 'metadata.aws', /unknown key/);
  });

  test('a route without upstream needs something to serve it, and cannot have host or listen', () => {
    const { tokenEndpoint: _omit, ...withoutEndpoint } = base();
    assertRejectedAt(withoutEndpoint, 'routes[1].upstream', /tokenEndpoint or metadata/);
    // Named by a metadata endpoint is enough.
    assert.doesNotThrow(() => parseConfig({ ...withoutEndpoint, metadata: { azure: { listen: '127.0.0.1:15005', defaultRoute: 'gcp' } } }));
    assertRejectedAt(base({ routes: [{ name: 'gcp', host: 'gcp.example' }] }), 'routes[0].upstream', /"host" or "listen"/);
  });

  test('listen addresses may not collide with the other listeners', () => {
    assertRejectedAt(base({ proxy: { listen: '127.0.0.1:15003' } }), 'tokenEndpoint.listen', /same address as proxy.listen/);
    const gce = { listen: '127.0.0.1:15003', route: 'gcp', projectId: 'p', serviceAccountEmail: 'a@p.iam.gserviceaccount.com' };
    assertRejectedAt(base({ metadata: { gce } }), 'metadata.gce.listen', /same address as tokenEndpoint.listen/);
  });

  test('a port already taken fails start-up naming the key', async (t) => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const port = (blocker.address() as AddressInfo).port;
    const config = parseConfig({
      proxy: { listen: '127.0.0.1:0' },
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'silent' },
      subjectToken: { value: 'not-a-jwt-subject-token' },
      sts: { url: 'http://127.0.0.1:9/token' },
      routes: [{ name: 'gcp', audience: 'https://gcp.example', lazy: true }],
      tokenEndpoint: { listen: `127.0.0.1:${port}` },
    });
    await assert.rejects(startSidecar(config), (err: unknown) => err instanceof ConfigError && err.path === 'tokenEndpoint.listen');
  });
});

/**
 * Issue 6: Azure IMDS managed-identity emulation. @azure/identity's
 * ManagedIdentityCredential (token acquisition by MSAL) runs unmodified in a child process
 * with AZURE_POD_IDENTITY_AUTHORITY_HOST pointed at the sidecar (MSAL keeps its token cache
 * and identity-source detection in statics, so each app is its own process).
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { runSdkClient, startEndpointStack, type EndpointStack } from './helpers/endpoints.js';
import { send } from './helpers/loopback.js';

const VAULT = 'https://vault.azure.net';
const ARM = 'https://management.azure.com/';
const CLIENT_ID = '6a1bcb3e-0f33-4b4e-9d0c-6f4c2f6b2a11';
const TOKEN_PATH = '/metadata/identity/oauth2/token';

function azureConfig(): Record<string, unknown> {
  return {
    routes: [
      { name: 'vault', audience: VAULT, lazy: true },
      { name: 'arm', audience: ARM, lazy: true },
    ],
    // The CLI asks for ARM with a trailing slash, the SDK's ".default" scope without: both map.
    metadata: { azure: { listen: '127.0.0.1:0', resources: { [VAULT]: 'vault', 'https://management.azure.com': 'arm' }, clientId: CLIENT_ID } },
  };
}

function azureEnv(stack: EndpointStack): Record<string, string> {
  return { AZURE_POD_IDENTITY_AUTHORITY_HOST: stack.harness.sidecar.endpointUrls.azure! };
}

interface SdkToken {
  token: string;
  expiresOnTimestamp: number;
}

const imds = { metadata: 'true' };

describe('Azure IMDS emulation: unmodified ManagedIdentityCredential', () => {
  let stack: EndpointStack;
  let base: string;
  before(async () => {
    stack = await startEndpointStack(azureConfig);
    base = stack.harness.sidecar.endpointUrls.azure!;
  });
  after(() => stack.close());

  const held = async (route: string) => (await stack.harness.sidecar.tokens.getToken(route)).accessToken;

  test('system-assigned: getToken(".default" scope) returns the STS-issued token with its expiry', async () => {
    const r = await runSdkClient(azureEnv(stack), stack.dir.path, 'azure-mi', `${VAULT}/.default`, '1');
    assert.equal(r['error'], undefined, String(r['message']));
    const [first] = r['tokens'] as SdkToken[];
    assert.ok(first);
    assert.equal((await stack.verify(first.token, VAULT)).sub, 'system:serviceaccount:shop:orders');
    assert.equal(first.token, await held('vault'));
    // MSAL derived this from expires_on: without it the SDK would treat the token as expired.
    assert.ok(first.expiresOnTimestamp > Date.now() + 3500_000 && first.expiresOnTimestamp <= Date.now() + 3601_000, `expiresOnTimestamp ${first.expiresOnTimestamp}`);
  });

  test('user-assigned by client_id: the configured client id is served, resource without trailing slash maps to the ARM route', async () => {
    const r = await runSdkClient(azureEnv(stack), stack.dir.path, 'azure-mi', `${ARM}.default`, '1', CLIENT_ID);
    assert.equal(r['error'], undefined, String(r['message']));
    const [first] = r['tokens'] as SdkToken[];
    assert.equal(first!.token, await held('arm'));
    await stack.verify(first!.token, ARM);
  });

  test('a client_id naming another identity fails in the SDK with "Identity not found", promptly (400 is not retried)', async () => {
    const started = Date.now();
    const r = await runSdkClient(azureEnv(stack), stack.dir.path, 'azure-mi', `${VAULT}/.default`, '1', '00000000-0000-0000-0000-000000000000');
    assert.equal(r['error'], 'CredentialUnavailableError');
    assert.match(String(r['message']), /Identity not found/);
    assert.ok(Date.now() - started < 15_000);
  });

  test('the IMDS reply: strings as IMDS sends them, expires_on in epoch seconds, the resource echoed', async () => {
    const r = await send(`${base}${TOKEN_PATH}?api-version=2018-02-01&resource=${encodeURIComponent(VAULT)}`, { headers: imds });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    const b = r.body;
    for (const key of ['access_token', 'client_id', 'expires_in', 'expires_on', 'ext_expires_in', 'not_before', 'resource', 'token_type']) {
      assert.equal(typeof b[key], 'string', key);
    }
    assert.equal(b['access_token'], await held('vault'));
    assert.equal(b['resource'], VAULT);
    assert.equal(b['token_type'], 'Bearer');
    assert.equal(b['client_id'], CLIENT_ID);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(Math.abs(Number(b['expires_on']) - (now + Number(b['expires_in']))) <= 1, 'expires_on = now + expires_in');
    const held2 = await stack.harness.sidecar.tokens.getToken('vault');
    assert.ok(Math.abs(Number(b['expires_on']) - Math.floor(held2.expiresAt / 1000)) <= 1, 'the cached token’s own expiry');
  });

  test('the path with and without the trailing slash MSAL appends', async () => {
    for (const path of [TOKEN_PATH, `${TOKEN_PATH}/`]) {
      const r = await send(`${base}${path}?api-version=2018-02-01&resource=${encodeURIComponent(VAULT)}`, { headers: imds });
      assert.equal(r.status, 200, path);
    }
  });

  test('Metadata: true is required (400 without, as IMDS does); X-Forwarded-For is refused', async () => {
    const url = `${base}${TOKEN_PATH}?api-version=2018-02-01&resource=${encodeURIComponent(VAULT)}`;
    const variants: Array<Record<string, string>> = [{}, { metadata: 'false' }];
    for (const headers of variants) {
      const r = await send(url, { headers });
      assert.equal(r.status, 400);
      assert.equal(r.body['error'], 'invalid_request');
      assert.equal(r.body['error_description'], 'Required metadata header not specified');
      assert.equal(r.body['access_token'], undefined);
    }
    assert.equal((await send(url, { headers: { ...imds, 'x-forwarded-for': '203.0.113.7' } })).status, 400);
  });

  test('api-version and resource are required; an unmapped resource with no defaultRoute is 400 invalid_resource', async () => {
    const missingVersion = await send(`${base}${TOKEN_PATH}?resource=${encodeURIComponent(VAULT)}`, { headers: imds });
    assert.equal(missingVersion.status, 400);
    const missingResource = await send(`${base}${TOKEN_PATH}?api-version=2018-02-01`, { headers: imds });
    assert.equal(missingResource.status, 400);
    const unknown = await send(`${base}${TOKEN_PATH}?api-version=2018-02-01&resource=${encodeURIComponent('https://storage.azure.com')}`, { headers: imds });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body['error'], 'invalid_resource');
    const objectId = await send(`${base}${TOKEN_PATH}?api-version=2018-02-01&resource=${encodeURIComponent(VAULT)}&object_id=x`, { headers: imds });
    assert.equal(objectId.status, 400);
    assert.equal((await send(`${base}/metadata/instance?api-version=2021-02-01`, { headers: imds })).status, 404);
  });

  test('no token in logs; metrics count Azure requests', async () => {
    const logs = stack.harness.logs.join('');
    for (const secret of [stack.podToken, await held('vault'), await held('arm')]) assert.ok(!logs.includes(secret));
    const text = await (await fetch(`${stack.harness.sidecar.adminUrl}/metrics`)).text();
    assert.match(text, /sts_sidecar_endpoint_requests_total\{endpoint="azure",route="vault",status_class="2xx"\} [1-9]/);
    assert.match(text, /sts_sidecar_endpoint_requests_total\{endpoint="azure",route="none",status_class="4xx"\} [1-9]/);
  });
});

describe('Azure IMDS emulation: one exchange, default route, and a clear failure', () => {
  test('concurrent raw and SDK callers on a cold cache cause exactly one exchange', async (t) => {
    const stack = await startEndpointStack(azureConfig);
    t.after(() => stack.close());
    const base = stack.harness.sidecar.endpointUrls.azure!;
    const burst = Array.from({ length: 40 }, () =>
      send(`${base}${TOKEN_PATH}/?api-version=2018-02-01&resource=${encodeURIComponent(VAULT)}`, { headers: imds }).then((r) => r.body['access_token'] as string),
    );
    const [tokens, sdk] = await Promise.all([Promise.all(burst), runSdkClient(azureEnv(stack), stack.dir.path, 'azure-mi', `${VAULT}/.default`, '10')]);
    const all = new Set([...tokens, ...(sdk['tokens'] as SdkToken[]).map((x) => x.token)]);
    assert.equal(all.size, 1);
    assert.equal(stack.sts.stats.exchangesIssued, 1, 'exactly one exchange at the STS');
  });

  test('defaultRoute answers any other resource', async (t) => {
    const stack = await startEndpointStack(() => ({
      routes: [{ name: 'arm', audience: ARM, lazy: true }],
      metadata: { azure: { listen: '127.0.0.1:0', defaultRoute: 'arm' } },
    }));
    t.after(() => stack.close());
    const r = await send(`${stack.harness.sidecar.endpointUrls.azure!}${TOKEN_PATH}?api-version=2019-08-01&resource=${encodeURIComponent('https://storage.azure.com')}&client_id=anything`, { headers: imds });
    assert.equal(r.status, 200);
    assert.equal(r.body['access_token'], (await stack.harness.sidecar.tokens.getToken('arm')).accessToken);
    assert.equal(r.body['client_id'], undefined, 'no client id configured, none invented');
  });

  test('STS down -> 503 JSON error naming the cause, promptly', async (t) => {
    const stack = await startEndpointStack(azureConfig);
    t.after(() => stack.close());
    await stack.sts.close();
    const started = Date.now();
    const r = await send(`${stack.harness.sidecar.endpointUrls.azure!}${TOKEN_PATH}?api-version=2018-02-01&resource=${encodeURIComponent(VAULT)}`, { headers: imds });
    assert.equal(r.status, 503);
    assert.equal(r.body['error'], 'temporarily_unavailable');
    assert.match(String(r.body['error_description']), /ERR_STS_UNREACHABLE/);
    assert.ok(Date.now() - started < 5000);
  });
});

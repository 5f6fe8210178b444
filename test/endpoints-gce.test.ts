/**
 * Issue 6: GCE metadata server emulation. gcp-metadata and google-auth-library's
 * GoogleAuth/Compute run unmodified in a child process with GCE_METADATA_HOST pointed at
 * the sidecar (both read it at call time; a child keeps their module-level caches and
 * the environment to themselves), and get the token the sidecar obtained from the
 * reference STS.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { CLOUD_PLATFORM, runSdkClient, startEndpointStack, type EndpointStack } from './helpers/endpoints.js';
import { send } from './helpers/loopback.js';

const WIF = '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/pods/providers/k8s';
const EMAIL = 'orders@shop-prod.iam.gserviceaccount.com';
const TOKEN_PATH = '/computeMetadata/v1/instance/service-accounts/default/token';

function gceConfig(): Record<string, unknown> {
  return {
    routes: [{ name: 'gcp', audience: WIF, scope: CLOUD_PLATFORM, lazy: true }],
    metadata: { gce: { listen: '127.0.0.1:0', route: 'gcp', projectId: 'shop-prod', numericProjectId: '123456789012', serviceAccountEmail: EMAIL } },
  };
}

function metadataEnv(stack: EndpointStack): Record<string, string> {
  // As a user would set it: host:port, no scheme.
  return { GCE_METADATA_HOST: new URL(stack.harness.sidecar.endpointUrls.gce!).host };
}

const flavor = { 'metadata-flavor': 'Google' };

/** A GET with exactly these headers (fetch cannot send a Host of our choosing). */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; flavor: string | undefined; text: string }> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, flavor: res.headers['metadata-flavor'] as string | undefined, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('GCE metadata emulation: unmodified Google clients', () => {
  let stack: EndpointStack;
  let base: string;
  before(async () => {
    stack = await startEndpointStack(gceConfig);
    base = stack.harness.sidecar.endpointUrls.gce!;
  });
  after(() => stack.close());

  const held = async () => (await stack.harness.sidecar.tokens.getToken('gcp')).accessToken;

  test('gcp-metadata: isAvailable(), project ids, e-mail, universe and the service-account token', async () => {
    const r = await runSdkClient(metadataEnv(stack), stack.dir.path, 'gcp-metadata');
    assert.equal(r['available'], true, 'isAvailable() probes /computeMetadata/v1/instance and checks Metadata-Flavor');
    assert.equal(r['projectId'], 'shop-prod');
    assert.equal(r['numericProjectId'], '123456789012');
    assert.equal(r['email'], EMAIL);
    assert.equal(r['universe'], 'googleapis.com');
    const token = r['token'] as { access_token: string; expires_in: number; token_type: string };
    assert.equal(token.token_type, 'Bearer');
    assert.ok(Number.isInteger(token.expires_in) && token.expires_in > 3500 && token.expires_in <= 3600, `expires_in ${token.expires_in}`);
    const claims = await stack.verify(token.access_token, WIF);
    assert.equal(claims.sub, 'system:serviceaccount:shop:orders');
    assert.equal(token.access_token, await held());
  });

  test('google-auth-library: GoogleAuth picks the Compute client and gets the token, project id and e-mail', async () => {
    const r = await runSdkClient(metadataEnv(stack), stack.dir.path, 'google-compute', '8');
    assert.equal(r['isCompute'], true, 'detected "GCE" through the sidecar');
    assert.equal(r['projectId'], 'shop-prod');
    assert.equal(r['email'], EMAIL);
    const token = r['token'] as string;
    await stack.verify(token, WIF);
    assert.equal(token, await held());
    const expiry = r['expiryDate'] as number;
    assert.ok(expiry > Date.now() + 3400_000 && expiry <= Date.now() + 3600_000, `expiry_date ${expiry}`);
    assert.deepEqual(new Set(r['tokens'] as string[]), new Set([token]), 'eight separate Compute clients got the same token');
  });

  test('Metadata-Flavor: Google is required (403 without or with another value) and set on every reply', async () => {
    const variants: Array<Record<string, string>> = [{}, { 'metadata-flavor': 'google' }, { 'x-google-metadata-request': 'True' }];
    for (const headers of variants) {
      const r = await rawGet(`${base}${TOKEN_PATH}`, headers);
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.equal(r.flavor, 'Google');
      assert.ok(!r.text.includes('eyJ'), 'no token in a refusal');
    }
    for (const path of ['/computeMetadata/v1/project/project-id', '/computeMetadata/v1/instance', '/computeMetadata/v1/instance/service-accounts/default/identity?audience=x', '/nope']) {
      const r = await rawGet(`${base}${path}`, flavor);
      assert.equal(r.flavor, 'Google', path);
    }
  });

  test("the root probe (Go's metadata.OnGCE sends no header) answers with Metadata-Flavor and nothing secret", async () => {
    const r = await rawGet(`${base}/`, {});
    assert.equal(r.status, 200);
    assert.equal(r.flavor, 'Google');
    assert.equal(r.text, 'computeMetadata/\n');
  });

  test('X-Forwarded-For is refused (as GCE does: a proxied request may come from outside)', async () => {
    const r = await rawGet(`${base}${TOKEN_PATH}`, { ...flavor, 'x-forwarded-for': '203.0.113.7' });
    assert.equal(r.status, 403);
  });

  test('DNS rebinding guard: IP literals, localhost and metadata.google.internal are served, other names are not', async () => {
    const port = new URL(base).port;
    assert.equal((await rawGet(`${base}/computeMetadata/v1/project/project-id`, { ...flavor, host: `metadata.google.internal.:${port}` })).status, 200);
    assert.equal((await rawGet(`${base}/computeMetadata/v1/project/project-id`, { ...flavor, host: `localhost:${port}` })).status, 200);
    assert.equal((await rawGet(`${base}/computeMetadata/v1/project/project-id`, { ...flavor, host: `attacker.example:${port}` })).status, 403);
  });

  test('paths: the account by e-mail, directory listings, recursive JSON, scopes; unknown keys 404, POST 405', async () => {
    const byEmail = await rawGet(`${base}/computeMetadata/v1/instance/service-accounts/${EMAIL}/token?scopes=${encodeURIComponent(CLOUD_PLATFORM)}`, flavor);
    assert.equal(byEmail.status, 200);
    assert.equal((JSON.parse(byEmail.text) as { access_token: string }).access_token, await held());
    assert.equal((await rawGet(`${base}/computeMetadata/v1/instance/service-accounts/`, flavor)).text, `default/\n${EMAIL}/\n`);
    const recursive = await rawGet(`${base}/computeMetadata/v1/instance/service-accounts/default/?recursive=true`, flavor);
    assert.deepEqual(JSON.parse(recursive.text), { aliases: ['default'], email: EMAIL, scopes: [CLOUD_PLATFORM] });
    assert.equal((await rawGet(`${base}/computeMetadata/v1/instance/service-accounts/default/scopes`, flavor)).text, `${CLOUD_PLATFORM}\n`);
    assert.equal((await rawGet(`${base}/computeMetadata/v1/instance/service-accounts/someone-else@x.iam.gserviceaccount.com/token`, flavor)).status, 404);
    assert.equal((await rawGet(`${base}/computeMetadata/v1/instance/service-accounts/default/identity?audience=x`, flavor)).status, 404);
    assert.equal((await rawGet(`${base}/computeMetadata/v1/instance/hostname`, flavor)).status, 404);
    assert.equal((await send(`${base}${TOKEN_PATH}`, { method: 'POST', headers: flavor })).status, 405);
  });

  test('metrics count GCE requests by route and status class', async () => {
    const text = await (await fetch(`${stack.harness.sidecar.adminUrl}/metrics`)).text();
    assert.match(text, /sts_sidecar_endpoint_requests_total\{endpoint="gce",route="gcp",status_class="2xx"\} [1-9]/);
    assert.match(text, /sts_sidecar_endpoint_requests_total\{endpoint="gce",route="none",status_class="4xx"\} [1-9]/);
  });
});

describe('GCE metadata emulation: one exchange, and a clear failure', () => {
  test('a burst of concurrent token reads plus two SDK apps on a cold cache cause exactly one exchange', async (t) => {
    const stack = await startEndpointStack(gceConfig);
    t.after(() => stack.close());
    const base = stack.harness.sidecar.endpointUrls.gce!;
    assert.equal(stack.sts.stats.exchangesIssued, 0);
    const burst = Array.from({ length: 40 }, () =>
      send(`${base}${TOKEN_PATH}`, { headers: flavor }).then((r) => (r.body as { access_token: string }).access_token),
    );
    const [tokens, meta, compute] = await Promise.all([
      Promise.all(burst),
      runSdkClient(metadataEnv(stack), stack.dir.path, 'gcp-metadata'),
      runSdkClient(metadataEnv(stack), stack.dir.path, 'google-compute', '10'),
    ]);
    const all = new Set([...tokens, (meta['token'] as { access_token: string }).access_token, compute['token'] as string, ...(compute['tokens'] as string[])]);
    assert.equal(all.size, 1, 'everyone got the same token');
    assert.equal(stack.sts.stats.exchangesIssued, 1, 'exactly one exchange at the STS');
    const metrics = await (await fetch(`${stack.harness.sidecar.adminUrl}/metrics`)).text();
    const misses = Number(/sts_sidecar_token_cache_misses_total\{route="gcp"\} (\d+)/.exec(metrics)?.[1] ?? 0);
    assert.ok(misses > 1, `several callers waited on the one exchange in flight (misses ${misses})`);
  });

  test('STS down -> 503 with the cause, Metadata-Flavor set, promptly', async (t) => {
    const stack = await startEndpointStack(gceConfig);
    t.after(() => stack.close());
    await stack.sts.close();
    const started = Date.now();
    const r = await rawGet(`${stack.harness.sidecar.endpointUrls.gce!}${TOKEN_PATH}`, flavor);
    assert.equal(r.status, 503);
    assert.equal(r.flavor, 'Google');
    assert.match(r.text, /no token available for route gcp \(ERR_STS_UNREACHABLE\)/);
    assert.ok(Date.now() - started < 5000);
  });
});

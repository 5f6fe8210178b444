/**
 * Issue 6: the local RFC 8693 token endpoint, against a real sidecar that exchanges at the
 * reference STS. Clients: google-auth-library's external-account (identity pool) client
 * unmodified, and requests byte-for-byte as grpc-go's STS credentials (JSON, snake_case)
 * and gRPC C-core (form, nothing percent-escaped) send them. Every token a client gets is
 * checked against the STS's JWKS and against what the sidecar holds.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { writeFile } from 'node:fs/promises';
import { ExternalAccountClient } from 'google-auth-library';
import { createWorkloadIssuer } from '../src/devsts/index.js';
import { eventually } from './helpers/eventually.js';
import { parsedLogs } from './helpers/harness.js';
import {
  ACCESS_TOKEN_TYPE,
  CLOUD_PLATFORM,
  JWT_TYPE,
  TOKEN_EXCHANGE,
  startEndpointStack,
  type EndpointStack,
} from './helpers/endpoints.js';
import { send, type Reply } from './helpers/loopback.js';

const ORDERS = 'https://orders.internal';
const GRPC = 'https://grpc.internal';
const WIF = '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/pods/providers/k8s';
/** RFC 6749 section 5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E. */
const DESCRIPTION_CHARSET = /^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/;

/** Routes with no upstream: served only through the endpoint. Lazy, so the first caller triggers the exchange. */
function routes(): Array<Record<string, unknown>> {
  return [
    { name: 'orders', audience: ORDERS, scope: 'orders.read', lazy: true },
    { name: 'grpc', audience: GRPC, resource: GRPC, lazy: true },
    { name: 'gcp', audience: WIF, scope: CLOUD_PLATFORM, lazy: true },
  ];
}

/** An HTTP/1.1 POST with exactly these headers and body (fetch would add its own). */
function rawPost(url: string, headers: Record<string, string>, body: string): Promise<Reply> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          const hdrs = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') hdrs.set(k, v);
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            // asserted through text
          }
          resolve({ status: res.statusCode ?? 0, headers: hdrs, body: parsed, text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** grpc-go credentials/sts: json.Marshal of requestParameters (field order, omitempty), Content-Type application/json. */
function grpcGoBody(subjectToken: string, audience: string): string {
  return JSON.stringify({
    grant_type: TOKEN_EXCHANGE,
    resource: audience,
    audience,
    // grpc-go sends cloud-platform whenever Options.Scope is empty.
    scope: CLOUD_PLATFORM,
    requested_token_type: ACCESS_TOKEN_TYPE,
    subject_token: subjectToken,
    subject_token_type: JWT_TYPE,
  });
}

const GRPC_GO_HEADERS = { host: '', 'user-agent': 'Go-http-client/1.1', 'content-type': 'application/json', 'accept-encoding': 'gzip' };

/** gRPC C-core: GRPC_STS_POST_MINIMAL_BODY_FORMAT_STRING then "&name=value" pairs, nothing escaped. */
function cCoreBody(subjectToken: string, pairs: Array<[string, string]>): string {
  return `grant_type=${TOKEN_EXCHANGE}&subject_token=${subjectToken}&subject_token_type=${JWT_TYPE}` + pairs.map(([k, v]) => `&${k}=${v}`).join('');
}

function form(pairs: Array<[string, string]>): string {
  return new URLSearchParams(pairs).toString();
}

/** RFC 8693 section 2.2.1, as grpc-go's tokenInfoFromResponse and C-core read it. */
function assertTokenResponse(reply: Reply): string {
  assert.equal(reply.status, 200, reply.text);
  assert.match(reply.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(reply.headers.get('cache-control'), 'no-store', 'RFC 6749 section 5.1');
  const body = reply.body;
  assert.equal(typeof body['access_token'], 'string');
  assert.equal(body['issued_token_type'], ACCESS_TOKEN_TYPE);
  assert.equal(body['token_type'], 'Bearer');
  assert.ok(Number.isInteger(body['expires_in']), 'expires_in must be an integer (grpc-go decodes it into int64)');
  assert.ok((body['expires_in'] as number) > 3500 && (body['expires_in'] as number) <= 3600, `expires_in ${String(body['expires_in'])}`);
  return body['access_token'] as string;
}

function assertOAuthError(reply: Reply, status: number, error: string): string {
  assert.equal(reply.status, status, reply.text);
  assert.equal(reply.body['error'], error, reply.text);
  const description = reply.body['error_description'];
  assert.equal(typeof description, 'string');
  assert.match(description as string, DESCRIPTION_CHARSET);
  assert.equal(reply.headers.get('cache-control'), 'no-store');
  return description as string;
}

describe('local token endpoint: real clients get the STS-issued token (callers: pod-token)', () => {
  let stack: EndpointStack;
  let url: string;
  before(async () => {
    stack = await startEndpointStack(() => ({ routes: routes(), tokenEndpoint: { listen: '127.0.0.1:0', callers: 'pod-token' } }));
    url = `${stack.harness.sidecar.endpointUrls.token!}/token`;
  });
  after(() => stack.close());

  async function held(route: string): Promise<string> {
    return (await stack.harness.sidecar.tokens.getToken(route)).accessToken;
  }

  test("google-auth-library ExternalAccountClient (identity pool, credential_source.file) with token_url at the sidecar", async () => {
    // The credential file an app would be given: the pod's projected token as the source.
    const client = ExternalAccountClient.fromJSON({
      type: 'external_account',
      audience: WIF,
      subject_token_type: JWT_TYPE,
      token_url: `${stack.harness.sidecar.endpointUrls.token!}/v1/token`,
      credential_source: { file: stack.tokenFile },
    });
    assert.ok(client, 'fromJSON returned a client');
    const { token } = await client.getAccessToken();
    assert.ok(token);
    const claims = await stack.verify(token, WIF);
    assert.equal(claims.sub, 'system:serviceaccount:shop:orders');
    assert.equal(claims['scope'], CLOUD_PLATFORM);
    assert.equal(token, await held('gcp'), 'the token the sidecar holds for route gcp');
    // The library computed its expiry from our expires_in.
    const expiry = client.credentials.expiry_date ?? 0;
    assert.ok(expiry > Date.now() + 3500_000 && expiry <= Date.now() + 3600_000, `expiry_date ${expiry}`);
  });

  test('grpc-go STS credentials: snake_case JSON exactly as credentials/sts sends it', async () => {
    const reply = await rawPost(url, { ...GRPC_GO_HEADERS, host: new URL(url).host }, grpcGoBody(stack.podToken, GRPC));
    const token = assertTokenResponse(reply);
    assert.equal((await stack.verify(token, GRPC)).sub, 'system:serviceaccount:shop:orders');
    assert.equal(token, await held('grpc'));
  });

  test('gRPC C-core STS credentials: form body with no value percent-escaped, no charset', async () => {
    const body = cCoreBody(stack.podToken, [
      ['resource', GRPC],
      ['audience', GRPC],
      ['requested_token_type', ACCESS_TOKEN_TYPE],
    ]);
    assert.ok(body.includes('grant_type=urn:ietf:params:oauth:grant-type:token-exchange&'), 'colons are not escaped');
    assert.ok(body.includes(`resource=${GRPC}&`), 'slashes are not escaped');
    const reply = await rawPost(url, { host: new URL(url).host, 'content-type': 'application/x-www-form-urlencoded' }, body);
    assert.equal(assertTokenResponse(reply), await held('grpc'));
  });

  test('RFC 8693 2.1: form body with charset=UTF-8, scope with an unescaped space is still one scope string', async () => {
    const body = cCoreBody(stack.podToken, [['audience', ORDERS], ['scope', 'orders.read orders.read']]);
    const reply = await rawPost(url, { host: new URL(url).host, 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' }, body);
    const token = assertTokenResponse(reply);
    assert.equal(reply.body['scope'], 'orders.read', 'RFC 6749 5.1: the scope of the token served');
    assert.equal((await stack.verify(token, ORDERS))['scope'], 'orders.read');
    assert.equal(token, await held('orders'));
  });

  test('Google STS v1/token camelCase JSON', async () => {
    const reply = await send(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify({ grantType: TOKEN_EXCHANGE, audience: ORDERS, requestedTokenType: ACCESS_TOKEN_TYPE, subjectToken: stack.podToken, subjectTokenType: JWT_TYPE }),
    });
    assert.equal(assertTokenResponse(reply), await held('orders'));
  });

  test('expires_in is what the cached token has left, not its original lifetime', async () => {
    const held = await stack.harness.sidecar.tokens.getToken('orders');
    const reply = await rawPost(url, { host: new URL(url).host, 'content-type': 'application/x-www-form-urlencoded' }, form([
      ['grant_type', TOKEN_EXCHANGE], ['subject_token', stack.podToken], ['subject_token_type', JWT_TYPE], ['audience', ORDERS],
    ]));
    assertTokenResponse(reply);
    const left = Math.floor((held.expiresAt - Date.now()) / 1000);
    assert.ok(Math.abs((reply.body['expires_in'] as number) - left) <= 1, `expires_in ${String(reply.body['expires_in'])} vs ${left} left`);
  });

  test("RFC 6749 5.2: a subject token that is not the pod's own -> invalid_grant, and nothing about routes", async () => {
    const stranger = await createWorkloadIssuer().mint({ sub: 'system:serviceaccount:other:app', aud: stack.sts.issuer });
    const before = stack.sts.stats.tokenRequests;
    for (const subject of [stranger, `${stack.podToken}x`, 'iamtheeggman']) {
      const reply = await rawPost(url, { ...GRPC_GO_HEADERS, host: new URL(url).host }, grpcGoBody(subject, 'https://unknown.internal'));
      const description = assertOAuthError(reply, 400, 'invalid_grant');
      assert.ok(!description.includes(subject) && !description.includes(stack.podToken), 'no token in the description');
      assert.ok(!/unknown|route/.test(description), 'an unauthorised caller learns nothing about routing');
    }
    assert.equal(stack.sts.stats.tokenRequests, before, 'refused callers cause no exchange');
  });

  test('a trailing newline on the presented token (a file read as is) still matches', async () => {
    const reply = await rawPost(url, { host: new URL(url).host, 'content-type': 'application/x-www-form-urlencoded' },
      form([['grant_type', TOKEN_EXCHANGE], ['subject_token', `${stack.podToken}\n`], ['subject_token_type', JWT_TYPE], ['audience', ORDERS]]));
    assertTokenResponse(reply);
  });

  test('RFC 8693 2.2.2: an audience no route serves, and no defaultRoute -> invalid_target', async () => {
    const reply = await rawPost(url, { ...GRPC_GO_HEADERS, host: new URL(url).host }, grpcGoBody(stack.podToken, 'https://unknown.internal'));
    assertOAuthError(reply, 400, 'invalid_target');
  });

  test('RFC 8693 2.1 / RFC 6749 3.2: malformed requests get RFC 6749 5.2 errors', async () => {
    const host = new URL(url).host;
    const formHeaders = { host, 'content-type': 'application/x-www-form-urlencoded' };
    assertOAuthError(await rawPost(url, formHeaders, form([['grant_type', 'client_credentials']])), 400, 'unsupported_grant_type');
    assertOAuthError(await rawPost(url, formHeaders, form([['grant_type', TOKEN_EXCHANGE], ['subject_token_type', JWT_TYPE]])), 400, 'invalid_request');
    assertOAuthError(await rawPost(url, { host, 'content-type': 'text/plain' }, 'hello'), 400, 'invalid_request');
    const actor = form([['grant_type', TOKEN_EXCHANGE], ['subject_token', stack.podToken], ['subject_token_type', JWT_TYPE], ['actor_token', 'a'], ['actor_token_type', JWT_TYPE], ['audience', ORDERS]]);
    assertOAuthError(await rawPost(url, formHeaders, actor), 400, 'invalid_request');
    const wrongType = form([['grant_type', TOKEN_EXCHANGE], ['subject_token', stack.podToken], ['subject_token_type', JWT_TYPE], ['audience', ORDERS], ['requested_token_type', 'urn:ietf:params:oauth:token-type:saml2']]);
    assertOAuthError(await rawPost(url, formHeaders, wrongType), 400, 'invalid_request');
    const get = await send(url);
    assertOAuthError(get, 405, 'invalid_request');
    assert.equal(get.headers.get('allow'), 'POST');
    assert.equal((await send(`${stack.harness.sidecar.endpointUrls.token!}/other`, { method: 'POST' })).status, 404);
  });

  test('DNS rebinding guard: a Host that is neither an IP literal nor localhost is refused', async () => {
    const reply = await rawPost(url, { host: 'attacker.example:80', 'content-type': 'application/x-www-form-urlencoded' },
      form([['grant_type', TOKEN_EXCHANGE], ['subject_token', stack.podToken], ['subject_token_type', JWT_TYPE], ['audience', ORDERS]]));
    assertOAuthError(reply, 403, 'invalid_request');
    const local = await rawPost(url, { host: `localhost:${new URL(url).port}`, 'content-type': 'application/x-www-form-urlencoded' },
      form([['grant_type', TOKEN_EXCHANGE], ['subject_token', stack.podToken], ['subject_token_type', JWT_TYPE], ['audience', ORDERS]]));
    assertTokenResponse(local);
  });

  test('no token in logs: neither the pod token, nor an issued token, nor a refused subject token', async () => {
    const issued = await Promise.all(['orders', 'grpc', 'gcp'].map(held));
    const logs = stack.harness.logs.join('');
    for (const secret of [stack.podToken, ...issued]) assert.ok(!logs.includes(secret), 'a token reached the logs');
    const refusals = parsedLogs(stack.harness.logs).filter((l) => l['msg'] === 'endpoint request refused');
    assert.ok(refusals.some((l) => l['code'] === 'invalid_grant' && l['endpoint'] === 'token'), 'refusals are logged with their code');
  });

  test('metrics: requests by endpoint, route and status class', async () => {
    const text = await (await fetch(`${stack.harness.sidecar.adminUrl}/metrics`)).text();
    assert.match(text, /sts_sidecar_endpoint_requests_total\{endpoint="token",route="orders",status_class="2xx"\} [1-9]/);
    assert.match(text, /sts_sidecar_endpoint_requests_total\{endpoint="token",route="none",status_class="4xx"\} [1-9]/);
    assert.match(text, /sts_sidecar_endpoint_request_duration_seconds_count\{endpoint="token"\} [1-9]/);
  });
});

describe('local token endpoint: concurrency and routing', () => {
  test('80 concurrent callers of every shape on a cold cache cause exactly one exchange', async (t) => {
    const stack = await startEndpointStack(() => ({ routes: routes(), tokenEndpoint: { listen: '127.0.0.1:0' } }));
    t.after(() => stack.close());
    const url = `${stack.harness.sidecar.endpointUrls.token!}/token`;
    const host = new URL(url).host;
    assert.equal(stack.sts.stats.exchangesIssued, 0, 'lazy routes: nothing exchanged yet');
    const callers: Array<Promise<string>> = [];
    for (let i = 0; i < 20; i++) {
      callers.push(rawPost(url, { ...GRPC_GO_HEADERS, host }, grpcGoBody(stack.podToken, GRPC)).then(assertTokenResponse));
      callers.push(rawPost(url, { host, 'content-type': 'application/x-www-form-urlencoded' }, cCoreBody(stack.podToken, [['audience', GRPC]])).then(assertTokenResponse));
      callers.push(send(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grantType: TOKEN_EXCHANGE, resource: GRPC, subjectToken: stack.podToken, subjectTokenType: JWT_TYPE }) }).then(assertTokenResponse));
      // A separate library client per caller: each asks the endpoint itself.
      const client = ExternalAccountClient.fromJSON({
        type: 'external_account',
        audience: GRPC,
        subject_token_type: JWT_TYPE,
        token_url: url,
        credential_source: { file: stack.tokenFile },
      });
      callers.push(client!.getAccessToken().then((r) => r.token ?? ''));
    }
    const tokens = await Promise.all(callers);
    assert.equal(new Set(tokens).size, 1, 'every caller got the same token');
    assert.equal(stack.sts.stats.exchangesIssued, 1, 'exactly one exchange at the STS');
    await stack.verify(tokens[0]!, GRPC);
  });

  test('callers: loopback serves any subject token; defaultRoute answers unmatched targets', async (t) => {
    const stack = await startEndpointStack(() => ({ routes: routes(), tokenEndpoint: { listen: '127.0.0.1:0', callers: 'loopback', defaultRoute: 'orders' } }));
    t.after(() => stack.close());
    const url = `${stack.harness.sidecar.endpointUrls.token!}/token`;
    const host = new URL(url).host;
    // The seed's opaque token: not the pod's, yet served, because any loopback caller is.
    const reply = await rawPost(url, { ...GRPC_GO_HEADERS, host }, grpcGoBody('iamtheeggman', 'https://unknown.internal'));
    const token = assertTokenResponse(reply);
    assert.equal(token, (await stack.harness.sidecar.tokens.getToken('orders')).accessToken, 'the default route');
    assert.equal((await stack.verify(token, ORDERS)).sub, 'system:serviceaccount:shop:orders', "the sidecar exchanged its own token, not the caller's");
    // No target at all: the default route too; a scope alone picks the route that has it.
    const byScope = await rawPost(url, { host, 'content-type': 'application/x-www-form-urlencoded' }, cCoreBody('x', [['scope', CLOUD_PLATFORM]]));
    assert.equal(assertTokenResponse(byScope), (await stack.harness.sidecar.tokens.getToken('gcp')).accessToken);
  });

  test('the pod token may rotate: the new one is accepted once the sidecar has read it, the previous one until it expires', async (t) => {
    const stack = await startEndpointStack(() => ({ routes: routes(), tokenEndpoint: { listen: '127.0.0.1:0' } }));
    t.after(() => stack.close());
    const url = `${stack.harness.sidecar.endpointUrls.token!}/token`;
    const host = new URL(url).host;
    const ask = (subject: string) => rawPost(url, { ...GRPC_GO_HEADERS, host }, grpcGoBody(subject, GRPC));
    assertTokenResponse(await ask(stack.podToken));
    const rotated = await stack.mint();
    assertOAuthError(await ask(rotated), 400, 'invalid_grant');
    await writeFile(stack.tokenFile, rotated);
    let reply = await ask(rotated);
    await eventually(async () => (reply = await ask(rotated)).status === 200, { timeoutMs: 10_000, intervalMs: 50 }).catch(() => {});
    assertTokenResponse(reply);
    // An app that has not re-read the file yet still presents the previous token.
    assertTokenResponse(await ask(stack.podToken));
  });
});

describe('local token endpoint: a failing STS gives a clear RFC 6749 error, never a hang', () => {
  test('STS down -> 503 temporarily_unavailable naming the cause', async (t) => {
    const stack = await startEndpointStack(() => ({
      routes: routes(),
      tokenEndpoint: { listen: '127.0.0.1:0' },
    }));
    t.after(() => stack.close());
    await stack.sts.close();
    const url = `${stack.harness.sidecar.endpointUrls.token!}/token`;
    const started = Date.now();
    const reply = await rawPost(url, { ...GRPC_GO_HEADERS, host: new URL(url).host }, grpcGoBody(stack.podToken, GRPC));
    const description = assertOAuthError(reply, 503, 'temporarily_unavailable');
    assert.match(description, /ERR_STS_UNREACHABLE/);
    // While the sidecar backs off, callers are refused at once rather than queued.
    const again = await rawPost(url, { ...GRPC_GO_HEADERS, host: new URL(url).host }, grpcGoBody(stack.podToken, GRPC));
    assertOAuthError(again, 503, 'temporarily_unavailable');
    assert.ok(Date.now() - started < 5000, 'answered promptly');
  });

  test("the STS's own invalid_grant is passed through (scrubbed), with the route named", async (t) => {
    // An STS that trusts no issuer refuses the pod's token.
    const stack = await startEndpointStack(() => ({ routes: routes(), tokenEndpoint: { listen: '127.0.0.1:0' } }), { trustedIssuers: [] });
    t.after(() => stack.close());
    const url = `${stack.harness.sidecar.endpointUrls.token!}/token`;
    const reply = await rawPost(url, { ...GRPC_GO_HEADERS, host: new URL(url).host }, grpcGoBody(stack.podToken, GRPC));
    const description = assertOAuthError(reply, 400, 'invalid_grant');
    assert.match(description, /the STS refused the exchange for route grpc \(invalid_grant/);
    assert.ok(!description.includes(stack.podToken));
  });
});

/**
 * The RFC 8693 client against real loopback servers: one fake STS per test (node:http on
 * port 0) that records what it received and answers as the test says. fetch/undici are
 * never mocked. Tests are named after the RFC section they check.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StsOAuthError, type ErrorCode } from '../src/errors.js';
import {
  clientSecretBasic,
  clientSecretPost,
  createStsClient,
  noClientAuth,
  type ExchangeParams,
  type StsClient,
  type StsClientOptions,
} from '../src/sts/index.js';
import { json, startFakeSts, type FakeSts, type FakeStsOptions, type StsAnswer, type StsRequest } from './helpers/fake-sts.js';
import { secret, startHttpServer, tempDir } from './helpers/loopback.js';

const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';

const PARAMS: ExchangeParams = { subjectToken: 'the-subject-token', subjectTokenType: JWT_TYPE };

/** A fake STS at `<origin>/token` that records each request and answers with `answer`. Closed after the test. */
async function stsAnswering(t: TestContext, answer: StsAnswer, server: Pick<FakeStsOptions, 'tls'> = {}): Promise<FakeSts> {
  const sts = await startFakeSts({ answer, ...server });
  t.after(() => sts.close());
  return sts;
}

function clientFor(t: TestContext, url: string, options: Partial<Omit<StsClientOptions, 'url'>> = {}): StsClient {
  const client = createStsClient({
    url: new URL(url),
    encoding: 'form',
    clientAuth: noClientAuth(),
    timeoutMs: 5000,
    maxResponseBytes: 64 * 1024,
    ...options,
  });
  // Hooks run in the order registered: the fake STS (started first) destroys its sockets before this close,
  // so the dispatcher never waits on a hung reply.
  t.after(() => client.close());
  return client;
}

function success(overrides: Record<string, unknown> = {}): StsAnswer {
  return json(200, {
    access_token: 'issued-access-token',
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: 3600,
    ...overrides,
  });
}

/** A compact JWS whose parts are base64url JSON; the signature is not checked by the client. */
function unsignedJwt(claims: Record<string, unknown>): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part(claims)}.${Buffer.from('not-a-real-signature').toString('base64url')}`;
}

/** Runs the exchange, expects it to fail, checks the code and that no token leaked into the message. */
async function expectFailure(client: StsClient, code: ErrorCode, params: ExchangeParams = PARAMS): Promise<Error & { code: string }> {
  let caught: unknown;
  try {
    await client.exchange(params);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, 'the exchange should have failed');
  const err = caught as Error & { code: string };
  assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
  assert.ok(!err.message.includes(params.subjectToken), 'the subject token must not appear in the error message');
  return err;
}

function onlyRequest(sts: FakeSts): StsRequest {
  assert.equal(sts.received.length, 1, 'the STS should have received exactly one request');
  return sts.received[0]!;
}

describe('RFC 8693 section 2.1: the token exchange request', () => {
  test('form encoding carries every parameter, repeated audience and resource as repeated keys', async (t) => {
    const sts = await stsAnswering(t, success());
    const client = clientFor(t, sts.tokenUrl);
    await client.exchange({
      subjectToken: 'subj.tok.en',
      subjectTokenType: JWT_TYPE,
      requestedTokenType: ACCESS_TOKEN_TYPE,
      audience: ['https://a.example', 'https://b.example'],
      resource: ['https://r1.example/api', 'https://r2.example/api'],
      scope: 'read write',
      actorToken: 'actor-token-value',
      actorTokenType: ACCESS_TOKEN_TYPE,
    });
    const req = onlyRequest(sts);
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/token');
    assert.equal(req.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(req.headers['accept'], 'application/json');
    const form = new URLSearchParams(req.body);
    assert.deepEqual([...form.keys()].sort(), [
      'actor_token',
      'actor_token_type',
      'audience',
      'audience',
      'grant_type',
      'requested_token_type',
      'resource',
      'resource',
      'scope',
      'subject_token',
      'subject_token_type',
    ]);
    assert.equal(form.get('grant_type'), GRANT_TYPE);
    assert.equal(form.get('subject_token'), 'subj.tok.en');
    assert.equal(form.get('subject_token_type'), JWT_TYPE);
    assert.equal(form.get('requested_token_type'), ACCESS_TOKEN_TYPE);
    assert.deepEqual(form.getAll('audience'), ['https://a.example', 'https://b.example']);
    assert.deepEqual(form.getAll('resource'), ['https://r1.example/api', 'https://r2.example/api']);
    assert.equal(form.get('scope'), 'read write');
    assert.equal(form.get('actor_token'), 'actor-token-value');
    assert.equal(form.get('actor_token_type'), ACCESS_TOKEN_TYPE);
    // Space is "+" in application/x-www-form-urlencoded, and the keys are literally repeated.
    assert.match(req.body, /(^|&)scope=read\+write(&|$)/);
    assert.equal(req.body.match(/(^|&)audience=/g)?.length, 2);
  });

  test('form encoding sends Google options as a JSON string', async (t) => {
    const sts = await stsAnswering(t, success());
    const client = clientFor(t, sts.tokenUrl);
    const options = { userProject: '1234', nested: { a: [1, 2] } };
    await client.exchange({ ...PARAMS, options });
    const form = new URLSearchParams(onlyRequest(sts).body);
    const sent = form.get('options');
    assert.equal(typeof sent, 'string');
    assert.deepEqual(JSON.parse(sent!), options);
  });

  test('JSON encoding with camelCase names (Google v1/token): one audience stays a string', async (t) => {
    const sts = await stsAnswering(t, success());
    const client = clientFor(t, sts.tokenUrl, { encoding: 'json', jsonFieldNames: 'camelCase' });
    await client.exchange({
      ...PARAMS,
      requestedTokenType: ACCESS_TOKEN_TYPE,
      audience: ['//iam.googleapis.com/projects/1/pool'],
      options: { userProject: '1234' },
    });
    const req = onlyRequest(sts);
    assert.equal(req.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(req.body), {
      grantType: GRANT_TYPE,
      subjectToken: PARAMS.subjectToken,
      subjectTokenType: JWT_TYPE,
      requestedTokenType: ACCESS_TOKEN_TYPE,
      audience: '//iam.googleapis.com/projects/1/pool',
      options: JSON.stringify({ userProject: '1234' }),
    });
  });

  test('JSON encoding defaults to camelCase names', async (t) => {
    const sts = await stsAnswering(t, success());
    const client = clientFor(t, sts.tokenUrl, { encoding: 'json' });
    await client.exchange(PARAMS);
    assert.deepEqual(JSON.parse(onlyRequest(sts).body), {
      grantType: GRANT_TYPE,
      subjectToken: PARAMS.subjectToken,
      subjectTokenType: JWT_TYPE,
    });
  });

  test('JSON encoding with snake_case names: two audiences become an array', async (t) => {
    const sts = await stsAnswering(t, success());
    const client = clientFor(t, sts.tokenUrl, { encoding: 'json', jsonFieldNames: 'snake_case' });
    await client.exchange({ ...PARAMS, audience: ['aud-1', 'aud-2'], scope: 'a b' });
    const req = onlyRequest(sts);
    assert.equal(req.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(req.body), {
      grant_type: GRANT_TYPE,
      subject_token: PARAMS.subjectToken,
      subject_token_type: JWT_TYPE,
      audience: ['aud-1', 'aud-2'],
      scope: 'a b',
    });
  });
});

describe('RFC 6749 section 2.3.1: client authentication', () => {
  const clientId = 'my client:1';
  const clientSecret = 'p@ss:w/rd+é';

  test('client_secret_basic form-urlencodes id and secret before base64', async (t) => {
    const sts = await stsAnswering(t, success());
    const client = clientFor(t, sts.tokenUrl, { clientAuth: clientSecretBasic(clientId, secret(clientSecret)) });
    await client.exchange(PARAMS);
    const req = onlyRequest(sts);
    const header = req.headers['authorization'];
    assert.ok(header !== undefined && header.startsWith('Basic '), `expected a Basic header, got ${String(header)}`);
    const decoded = Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
    assert.equal(decoded, 'my+client%3A1:p%40ss%3Aw%2Frd%2B%C3%A9');
    // The first ":" separates id and secret, because neither contains a raw ":" after encoding.
    const colon = decoded.indexOf(':');
    const formDecode = (s: string) => new URLSearchParams(`v=${s}`).get('v');
    assert.equal(formDecode(decoded.slice(0, colon)), clientId);
    assert.equal(formDecode(decoded.slice(colon + 1)), clientSecret);
    const form = new URLSearchParams(req.body);
    assert.equal(form.has('client_id'), false);
    assert.equal(form.has('client_secret'), false);
  });

  test('client_secret_post puts client_id and client_secret in the body', async (t) => {
    const sts = await stsAnswering(t, success());
    const client = clientFor(t, sts.tokenUrl, { clientAuth: clientSecretPost(clientId, secret(clientSecret)) });
    await client.exchange(PARAMS);
    const req = onlyRequest(sts);
    assert.equal(req.headers['authorization'], undefined);
    const form = new URLSearchParams(req.body);
    assert.equal(form.get('client_id'), clientId);
    assert.equal(form.get('client_secret'), clientSecret);
  });

  test('client_secret_basic reads the secret at each exchange (rotation)', async (t) => {
    const sts = await stsAnswering(t, success());
    let current = 'first-secret';
    const rotating = { ...secret('unused'), current: () => current };
    const client = clientFor(t, sts.tokenUrl, { clientAuth: clientSecretBasic('id', rotating) });
    await client.exchange(PARAMS);
    current = 'second-secret';
    await client.exchange(PARAMS);
    const secrets = sts.received.map((r) => Buffer.from(r.headers['authorization']!.slice(6), 'base64').toString('utf8'));
    assert.deepEqual(secrets, ['id:first-secret', 'id:second-secret']);
  });

  test('none with a client id sends client_id and nothing else (RFC 6749 section 3.2.1)', async (t) => {
    const sts = await stsAnswering(t, success());
    const client = clientFor(t, sts.tokenUrl, { clientAuth: noClientAuth('public-client') });
    await client.exchange(PARAMS);
    const req = onlyRequest(sts);
    assert.equal(req.headers['authorization'], undefined);
    const form = new URLSearchParams(req.body);
    assert.equal(form.get('client_id'), 'public-client');
    assert.equal(form.has('client_secret'), false);
  });

  test('none without a client id sends no client_id', async (t) => {
    const sts = await stsAnswering(t, success());
    const client = clientFor(t, sts.tokenUrl, { clientAuth: noClientAuth() });
    await client.exchange(PARAMS);
    const req = onlyRequest(sts);
    assert.equal(req.headers['authorization'], undefined);
    assert.equal(new URLSearchParams(req.body).has('client_id'), false);
  });
});

describe('RFC 8693 section 2.2.1: successful response', () => {
  test('returns the token, its types and expiresAt = request time + expires_in', async (t) => {
    const sts = await stsAnswering(t, success({ expires_in: 3600, scope: 'read' }));
    const client = clientFor(t, sts.tokenUrl);
    const before = Date.now();
    const token = await client.exchange(PARAMS);
    const afterExchange = Date.now();
    assert.equal(token.accessToken, 'issued-access-token');
    assert.equal(token.issuedTokenType, ACCESS_TOKEN_TYPE);
    assert.equal(token.tokenType, 'Bearer');
    assert.equal(token.scope, 'read');
    assert.ok(token.issuedAt >= before && token.issuedAt <= afterExchange);
    assert.ok(token.expiresAt >= before + 3_600_000 && token.expiresAt <= afterExchange + 3_600_000, `expiresAt ${token.expiresAt}`);
    assert.equal(token.expiresAt - token.issuedAt, 3_600_000);
  });

  test('token_type N_A is accepted (a JWT usable as a bearer token)', async (t) => {
    const sts = await stsAnswering(t, success({ token_type: 'N_A' }));
    const token = await clientFor(t, sts.tokenUrl).exchange(PARAMS);
    assert.equal(token.tokenType, 'N_A');
  });

  test('without expires_in, expiresAt comes from the JWT exp claim', async (t) => {
    const exp = Math.floor(Date.now() / 1000) + 900;
    const jwt = unsignedJwt({ sub: 'workload', exp });
    const sts = await stsAnswering(t, success({ access_token: jwt, expires_in: undefined, issued_token_type: JWT_TYPE }));
    const token = await clientFor(t, sts.tokenUrl).exchange(PARAMS);
    assert.equal(token.accessToken, jwt);
    assert.equal(token.expiresAt, exp * 1000);
  });

  test('with both, the earlier of expires_in and the JWT exp wins (JWT exp earlier)', async (t) => {
    const exp = Math.floor(Date.now() / 1000) + 600;
    const sts = await stsAnswering(t, success({ access_token: unsignedJwt({ exp }), expires_in: 3600 }));
    const token = await clientFor(t, sts.tokenUrl).exchange(PARAMS);
    assert.equal(token.expiresAt, exp * 1000);
  });

  test('with both, the earlier of expires_in and the JWT exp wins (expires_in earlier)', async (t) => {
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const sts = await stsAnswering(t, success({ access_token: unsignedJwt({ exp }), expires_in: 60 }));
    const token = await clientFor(t, sts.tokenUrl).exchange(PARAMS);
    assert.equal(token.expiresAt - token.issuedAt, 60_000);
  });

  test('expires_in as a numeric string is accepted', async (t) => {
    const sts = await stsAnswering(t, success({ expires_in: '120' }));
    const token = await clientFor(t, sts.tokenUrl).exchange(PARAMS);
    assert.equal(token.expiresAt - token.issuedAt, 120_000);
  });
});

describe('RFC 8693 section 2.2.1: non-conformant responses are rejected', () => {
  const invalid: Array<[string, StsAnswer]> = [
    ['a body that is not JSON', (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('access_token=nope');
    }],
    ['a JSON array', json(200, [{ access_token: 'x', issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: 60 }])],
    ['JSON null', json(200, 'null')],
    ['missing access_token', success({ access_token: undefined })],
    ['an empty access_token', success({ access_token: '' })],
    ['missing issued_token_type', success({ issued_token_type: undefined })],
    ['missing token_type', success({ token_type: undefined })],
    ['token_type DPoP (cannot be sent as a bearer token)', success({ token_type: 'DPoP' })],
    ['an access_token with CR LF (header injection)', success({ access_token: 'good\r\nX-Injected: yes' })],
    ['an access_token with a space', success({ access_token: 'two words' })],
    ['a negative expires_in', success({ expires_in: -5 })],
    ['a zero expires_in', success({ expires_in: 0 })],
    ['expires_in "abc"', success({ expires_in: 'abc' })],
    ['neither expires_in nor a JWT exp', success({ expires_in: undefined })],
    ['no expires_in and a JWT without exp', success({ expires_in: undefined, access_token: unsignedJwt({ sub: 'x' }) })],
    ['a JWT that is already expired', success({ expires_in: undefined, access_token: unsignedJwt({ exp: Math.floor(Date.now() / 1000) - 10 }) })],
    ['HTTP 400 without an error member', json(400, { error_description: 'no code' })],
    ['HTTP 201 with a token (only 200 is success)', json(201, {
      access_token: 'issued-access-token',
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: 60,
    })],
  ];

  for (const [what, reply] of invalid) {
    test(`${what} -> ERR_STS_RESPONSE_INVALID`, async (t) => {
      const sts = await stsAnswering(t, reply);
      const err = await expectFailure(clientFor(t, sts.tokenUrl), 'ERR_STS_RESPONSE_INVALID');
      assert.ok(!err.message.includes('good\r\n') && !err.message.includes('issued-access-token'), 'no issued token in the message');
      assert.equal(sts.received.length, 1);
    });
  }
});

// The brief for these tests said ERR_STS_RESPONSE_INVALID; src/sts/exchange-response.ts now maps every 5xx
// to ERR_STS_SERVER_ERROR on purpose (retryable, whatever the body says), and the token provider relies on it.
describe('RFC 6749 section 5.2 does not cover 5xx: the STS is in trouble', () => {
  const serverErrors: Array<[string, StsAnswer]> = [
    ['HTTP 500 with HTML', (res) => {
      res.writeHead(500, { 'content-type': 'text/html' });
      res.end('<html><body>Internal Server Error</body></html>');
    }],
    ['HTTP 503 with JSON {}', json(503, {})],
    ['HTTP 503 with an OAuth error body', json(503, { error: 'temporarily_unavailable' })],
  ];
  for (const [what, reply] of serverErrors) {
    test(`${what} -> ERR_STS_SERVER_ERROR, not an OAuth error`, async (t) => {
      const sts = await stsAnswering(t, reply);
      const err = await expectFailure(clientFor(t, sts.tokenUrl), 'ERR_STS_SERVER_ERROR');
      assert.ok(!(err instanceof StsOAuthError));
    });
  }
});

describe('response size limit', () => {
  const LIMIT = 64 * 1024;
  const HUGE = 8 * 1024 * 1024;

  /**
   * Starts an 8 MiB reply and holds the rest back until the client goes away, so a client that tried
   * to read it all would hit its (5 s) deadline instead of failing at once. With content-length, only
   * 1 KiB (under the limit) is sent: the client must refuse on the declared size alone. Chunked, 1 MiB
   * is sent: the client must stop counting at the limit.
   */
  function hugeReply(withContentLength: boolean, closed: { resolve: () => void }): StsAnswer {
    return (res) => {
      const headers: Record<string, string | number> = { 'content-type': 'application/json' };
      if (withContentLength) headers['content-length'] = HUGE;
      res.writeHead(200, headers);
      res.write(`{"access_token":"${'a'.repeat(withContentLength ? 1024 : 1024 * 1024)}`);
      res.on('close', () => closed.resolve());
    };
  }

  for (const withContentLength of [true, false]) {
    test(`an 8 MiB reply ${withContentLength ? 'with content-length' : 'chunked'} -> ERR_STS_RESPONSE_TOO_LARGE, promptly`, async (t) => {
      let resolveClosed!: () => void;
      const connectionClosed = new Promise<void>((resolve) => (resolveClosed = resolve));
      const sts = await stsAnswering(t, hugeReply(withContentLength, { resolve: resolveClosed }));
      const client = clientFor(t, sts.tokenUrl, { maxResponseBytes: LIMIT, timeoutMs: 5000 });
      const started = Date.now();
      await expectFailure(client, 'ERR_STS_RESPONSE_TOO_LARGE');
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 1500, `took ${elapsed} ms: the client waited for the body instead of stopping at the limit`);
      // The client dropped the connection rather than draining the rest.
      const dropped = await Promise.race([connectionClosed.then(() => true), new Promise<boolean>((r) => setTimeout(r, 1000, false))]);
      assert.equal(dropped, true, 'the client should close the connection of an oversized reply');
    });
  }

  test('a reply exactly at the limit is read', async (t) => {
    const body = JSON.stringify({ access_token: 'issued-access-token', issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: 60 });
    const padded = body.slice(0, -1) + ',"pad":"' + 'p'.repeat(2048 - body.length - 9) + '"}';
    assert.equal(Buffer.byteLength(padded), 2048);
    const sts = await stsAnswering(t, json(200, padded));
    const token = await clientFor(t, sts.tokenUrl, { maxResponseBytes: 2048 }).exchange(PARAMS);
    assert.equal(token.accessToken, 'issued-access-token');
  });
});

describe('transport failures', () => {
  test('an STS that accepts the connection and never answers -> ERR_STS_TIMEOUT within about timeoutMs', async (t) => {
    const sts = await stsAnswering(t, () => {
      /* never answer */
    });
    const client = clientFor(t, sts.tokenUrl, { timeoutMs: 300 });
    const started = Date.now();
    await expectFailure(client, 'ERR_STS_TIMEOUT');
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 250, `gave up after ${elapsed} ms, before the 300 ms deadline`);
    assert.ok(elapsed < 2000, `took ${elapsed} ms`);
  });

  test('an STS that sends headers then stalls the body -> ERR_STS_TIMEOUT', async (t) => {
    const sts = await stsAnswering(t, (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"access_token":"partial');
    });
    const client = clientFor(t, sts.tokenUrl, { timeoutMs: 300 });
    const started = Date.now();
    await expectFailure(client, 'ERR_STS_TIMEOUT');
    assert.ok(Date.now() - started < 2000);
  });

  test('a closed port -> ERR_STS_UNREACHABLE', async (t) => {
    const probe = await startHttpServer(() => {});
    const url = `${probe.url}/token`;
    await probe.close();
    await expectFailure(clientFor(t, url, { timeoutMs: 2000 }), 'ERR_STS_UNREACHABLE');
  });

  test('the same client completes a good exchange after failed ones', async (t) => {
    const sts = await stsAnswering(t, (res, req, self) => {
      if (req.nth === 1) return json(200, '<html>not json</html>')(res, req, self);
      if (req.nth === 2) return json(400, { error: 'invalid_grant' })(res, req, self);
      if (req.nth === 3) {
        res.writeHead(200);
        res.write('{"stall":');
        return; // stalled: the client times out and must drop this connection
      }
      return success({ access_token: 'after-recovery' })(res, req, self);
    });
    const client = clientFor(t, sts.tokenUrl, { timeoutMs: 300 });
    await expectFailure(client, 'ERR_STS_RESPONSE_INVALID');
    await expectFailure(client, 'ERR_STS_OAUTH_ERROR');
    await expectFailure(client, 'ERR_STS_TIMEOUT');
    const token = await client.exchange(PARAMS);
    assert.equal(token.accessToken, 'after-recovery');
    assert.equal(sts.received.length, 4);
  });
});

describe('RFC 6749 section 5.2: error response', () => {
  test('400 invalid_grant -> StsOAuthError keeping error, description and status', async (t) => {
    const sts = await stsAnswering(t, json(400, { error: 'invalid_grant', error_description: 'subject token expired' }));
    const err = await expectFailure(clientFor(t, sts.tokenUrl), 'ERR_STS_OAUTH_ERROR');
    assert.ok(err instanceof StsOAuthError);
    assert.equal(err.error, 'invalid_grant');
    assert.equal(err.errorDescription, 'subject token expired');
    assert.equal(err.stsStatus, 400);
  });

  test('401 invalid_client -> StsOAuthError with status 401 and no description', async (t) => {
    const sts = await stsAnswering(t, json(401, { error: 'invalid_client' }, { 'www-authenticate': 'Basic realm="sts"' }));
    const err = await expectFailure(clientFor(t, sts.tokenUrl), 'ERR_STS_OAUTH_ERROR');
    assert.ok(err instanceof StsOAuthError);
    assert.equal(err.error, 'invalid_client');
    assert.equal(err.errorDescription, undefined);
    assert.equal(err.stsStatus, 401);
  });

  test('an error_description echoing a JWT has it replaced by [Redacted]', async (t) => {
    const echoed = unsignedJwt({ sub: 'system:serviceaccount:ns:sa', exp: 1 });
    const sts = await stsAnswering(t, json(400, { error: 'invalid_request', error_description: `bad subject_token ${echoed} (expired)` }));
    const err = await expectFailure(clientFor(t, sts.tokenUrl), 'ERR_STS_OAUTH_ERROR', { ...PARAMS, subjectToken: echoed });
    assert.ok(err instanceof StsOAuthError);
    assert.equal(err.errorDescription, 'bad subject_token [Redacted] (expired)');
    assert.ok(!err.message.includes(echoed), 'the JWT must not appear in err.message');
    assert.ok(err.message.includes('[Redacted]'));
  });
});

describe('TLS to the STS', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let key: string;
  let cert: string;

  before(async () => {
    dir = await tempDir();
    const keyPath = join(dir.path, 'key.pem');
    const certPath = join(dir.path, 'cert.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-days', '1', '-keyout', keyPath, '-out', certPath,
    ], { stdio: 'ignore' });
    key = readFileSync(keyPath, 'utf8');
    cert = readFileSync(certPath, 'utf8');
  });

  after(async () => {
    await dir?.cleanup();
  });

  test('an https STS with a self-signed certificate works when ca is that certificate', async (t) => {
    const sts = await stsAnswering(t, success(), { tls: { key, cert } });
    assert.ok(sts.url.startsWith('https://127.0.0.1:'));
    const token = await clientFor(t, sts.tokenUrl, { tls: { ca: cert } }).exchange(PARAMS);
    assert.equal(token.accessToken, 'issued-access-token');
    assert.equal(sts.received.length, 1);
  });

  test('without ca the self-signed STS is not trusted -> ERR_STS_UNREACHABLE, nothing sent', async (t) => {
    const sts = await stsAnswering(t, success(), { tls: { key, cert } });
    await expectFailure(clientFor(t, sts.tokenUrl), 'ERR_STS_UNREACHABLE');
    assert.equal(sts.received.length, 0, 'the subject token must not be sent over an untrusted connection');
  });
});

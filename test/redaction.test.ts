/**
 * Issue 10 items 15 and 23: an STS that echoes our secrets in an encoded form, and two
 * sidecars in one process, each with its own redactor. Real STSs, upstreams and clients on
 * loopback; what leaves the sidecar (logs at trace, the app's 503 body, the token
 * endpoint's error_description) is checked with decoders independent of the scrubber.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeAfter, parsedLogs, startHarness, startUpstream, TOKEN_TYPE_ACCESS, type SidecarHarness } from './helpers/harness.js';
import { postForm, send } from './helpers/loopback.js';
import { eventually } from './helpers/eventually.js';
import { issueToken, oauthError, startFakeSts } from './helpers/fake-sts.js';
import { createRedactor } from '../src/log/redact.js';
import { assertNoSecret, exposes } from './helpers/secret-exposure.js';
import type { SecretSource } from '../src/credentials/secret-source.js';

const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

const formEncode = (value: string) => new URLSearchParams([['', value]]).toString().slice(1);
const b64 = (text: string) => Buffer.from(text).toString('base64');
const b64url = (text: string) => Buffer.from(text).toString('base64url');

describe('issue 10 item 15: an STS that echoes encoded secrets', () => {
  test('Basic credentials, a percent-encoded subject token and base64 forms are scrubbed from logs, 503 bodies and error_description', async (t) => {
    const own = closeAfter(t);
    // Values whose encodings all differ from the raw text: space, '/', '+', ':', '@', '~', '*', '(', ')'.
    const subject = 'subj ect/+tok~en!*(x)';
    const clientId = 'sidecar client';
    const clientSecret = 'p@ss:w rd/+s3cret';
    // The STS refuses every exchange and echoes what it received, in every shape seen in the wild.
    const sts = own(await startFakeSts({
      answer: (res, request, self) => {
        const sentSubject = /(?:^|&)subject_token=([^&]*)/.exec(request.body)?.[1] ?? '';
        const got = request.form.get('subject_token') ?? '';
        const echo = [
          `seen ${request.headers.authorization}`,
          `form=${sentSubject}`,
          `uri=${encodeURIComponent(got)}`,
          `lower=${encodeURIComponent(got).toLowerCase()}`,
          `b64=${b64(got)}`,
          `b64url=${b64url(got)}`,
          `json=${b64(JSON.stringify({ subject_token: got }))}`,
        ].join(' ');
        oauthError('invalid_client', echo, 401)(res, request, self);
      },
    }));
    const upstream = own(await startUpstream());
    const h = own(await startHarness({
      log: { level: 'trace' },
      subjectToken: { value: subject, type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl, clientAuth: { method: 'client_secret_basic', clientId, clientSecret: { value: clientSecret } } },
      routes: [
        { name: 'proxied', listen: '127.0.0.1:0', upstream: upstream.url },
        { name: 'tokenonly', audience: ['token-only'] },
      ],
      tokenEndpoint: { listen: '127.0.0.1:0', callers: 'loopback', defaultRoute: 'tokenonly' },
    }));
    const secrets = { 'subject token': subject, 'client secret': clientSecret, 'Basic credential': `${formEncode(clientId)}:${formEncode(clientSecret)}` };

    const refused = await send(`${h.sidecar.routeUrls['proxied']}/`);
    assert.equal(refused.status, 503);
    assert.equal(refused.body['code'], 'ERR_TOKEN_UNAVAILABLE');
    assert.equal(refused.body['stsError'], 'invalid_client');
    assert.match(refused.text, /seen Basic \[Redacted\] form=\[Redacted\] uri=\[Redacted\] lower=\[Redacted\] b64=\[Redacted\] b64url=\[Redacted\] json=/);
    assertNoSecret("the app's 503 body", refused.text, secrets);

    const endpoint = await postForm(`${h.sidecar.endpointUrls.token!}/token`, {
      grant_type: GRANT_TOKEN_EXCHANGE,
      subject_token: 'any-local-caller',
      subject_token_type: TOKEN_TYPE_ACCESS,
    });
    assert.equal(endpoint.status, 503);
    assert.equal(endpoint.body['error'], 'temporarily_unavailable');
    const description = String(endpoint.body['error_description']);
    assert.match(description, /Basic \[Redacted\]/);
    assertNoSecret("the token endpoint's error_description", description, secrets);

    const logs = h.logs.join('');
    assert.ok(parsedLogs(h.logs).some((l) => l['msg'] === 'token exchange failed'), 'the failure was logged');
    assertNoSecret('the logs', logs, secrets);
  });
});

/** An STS for one sidecar: tokens for audience "good", an echo of `echo()` refusing audience "echo". */
const startEchoingSts = (prefix: string, echo: () => string) =>
  startFakeSts({
    makeToken: (n) => `${prefix}-issued-${n}-xxxxxxxx`,
    answer: (res, request, sts) =>
      request.form.get('audience') === 'echo' ? oauthError('invalid_request', echo())(res, request, sts) : issueToken(res, request, sts),
  });

describe('issue 10 item 23: each sidecar owns its redactor', () => {
  test('two sidecars in one process scrub their own secrets, not each other’s, before and after one closes', async (t) => {
    const own = closeAfter(t);
    let echo = '';
    const upstream = own(await startUpstream());
    const start = async (name: string): Promise<SidecarHarness> => {
      const sts = own(await startEchoingSts(name, () => echo));
      return own(await startHarness({
        subjectToken: { value: `${name}-subject-token-value`, type: TOKEN_TYPE_ACCESS },
        sts: { url: sts.tokenUrl },
        cache: { retryInitialDelaySeconds: 0.01, retryMaxDelaySeconds: 0.02 },
        routes: [
          { name: 'good', audience: ['good'], listen: '127.0.0.1:0', upstream: upstream.url },
          { name: 'echo', audience: ['echo'], lazy: true, listen: '127.0.0.1:0', upstream: upstream.url },
        ],
      }));
    };
    const alpha = await start('alpha');
    const beta = await start('beta');
    const secretsOf = async (h: SidecarHarness, name: string) => ({
      subject: `${name}-subject-token-value`,
      token: (await h.sidecar.tokens.getToken('good')).accessToken,
    });
    const a = await secretsOf(alpha, 'alpha');
    const b = await secretsOf(beta, 'beta');

    /** The echo route's 503 body once the STS's reply carrying this phase's echo has been seen. */
    const echoed = async (h: SidecarHarness, phase: string): Promise<string> => {
      echo = `${phase} alpha=${a.subject},${a.token} beta=${b.subject},${b.token}`;
      return eventually(
        async () => {
          const r = await send(`${h.sidecar.routeUrls['echo']}/`);
          assert.equal(r.status, 503, r.text);
          return r.text.includes(phase) && r.text;
        },
        { what: `the STS echo for ${phase} to reach the body` },
      );
    };

    const alphaSees = await echoed(alpha, 'phase-1a');
    assert.ok(alphaSees.includes('alpha=[Redacted],[Redacted]'), alphaSees);
    assert.ok(alphaSees.includes(`beta=${b.subject},${b.token}`), `alpha scrubbed beta's secrets: ${alphaSees}`);
    const betaSees = await echoed(beta, 'phase-1b');
    assert.ok(betaSees.includes('beta=[Redacted],[Redacted]'), betaSees);
    assert.ok(betaSees.includes(`alpha=${a.subject},${a.token}`), `beta scrubbed alpha's secrets: ${betaSees}`);

    await alpha.close();
    const afterClose = await echoed(beta, 'phase-2');
    assert.ok(afterClose.includes('beta=[Redacted],[Redacted]'), afterClose);
    assert.ok(afterClose.includes(`alpha=${a.subject},${a.token}`), `beta still scrubs the closed alpha's secrets: ${afterClose}`);
  });
});

describe('the Redactor', () => {
  test('a value registered twice (two routes holding one token) stays scrubbed until forgotten twice', () => {
    const redactor = createRedactor();
    redactor.register('shared-token-value');
    redactor.register('shared-token-value');
    redactor.forget('shared-token-value');
    assert.equal(redactor.scrub('x shared-token-value x'), 'x [Redacted] x');
    redactor.forget('shared-token-value');
    assert.equal(redactor.scrub('x shared-token-value x'), 'x shared-token-value x');
  });

  test('a tracked source: the current value and the one before it are scrubbed, older ones are not', () => {
    let value = 'first-secret-value';
    const listeners: Array<() => void> = [];
    const source: SecretSource = { description: 'test', current: () => value, onChange: (l) => void listeners.push(l), close: () => {} };
    const redactor = createRedactor();
    redactor.track(source);
    const rotate = (next: string) => {
      value = next;
      listeners.forEach((l) => l());
    };
    rotate('second-secret-value');
    assert.equal(redactor.scrub('first-secret-value second-secret-value'), '[Redacted] [Redacted]');
    rotate('third-secret-value');
    assert.equal(redactor.scrub('first-secret-value second-secret-value third-secret-value'), 'first-secret-value [Redacted] [Redacted]');
  });

  test('a secret inside a larger base64 blob is scrubbed at every byte alignment; `also` adds secrets for one call', () => {
    const redactor = createRedactor();
    redactor.register('the-registered-one');
    for (const prefix of ['', 'a', 'ab', 'abc']) {
      const blob = b64(`{"${prefix}":"the-registered-one","n":1}`);
      assert.ok(!exposes(redactor.scrub(blob), 'the-registered-one'), `${prefix.length}-byte prefix: ${redactor.scrub(blob)}`);
    }
    assert.equal(redactor.scrub('one-call-secret', 512, ['one-call-secret']), '[Redacted]');
    assert.equal(redactor.scrub('one-call-secret'), 'one-call-secret');
  });
});

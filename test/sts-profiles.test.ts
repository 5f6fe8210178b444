/**
 * Several identities (issue 13): STS profiles and per-route subject tokens. Two real STSs on
 * loopback record what they received: one form-encoded (RFC 8693 section 2.1), one JSON the
 * way Google's STS v1/token takes it. Each must see only its own subject token and its own
 * routes' audiences, concurrent traffic must not mix them, and a rotated subject-token file
 * re-exchanges only the routes that use it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { request } from 'undici';
import { eventually } from './helpers/eventually.js';
import { configProblems } from './helpers/config-problems.js';
import { createTestPki } from './helpers/pki.js';
import { startFakeSts, type FakeSts, type StsRequest } from './helpers/fake-sts.js';
import { closeAfter, parsedLogs, startHarness, startUpstream, TOKEN_TYPE_JWT } from './helpers/harness.js';

const GOOGLE_AUDIENCE = '//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/k8s';

/** A compact JWT (unsigned: the fake STSs do not verify) with the claims a projected token has. */
function projectedToken(aud: string, jti: string): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part({ iss: 'https://kubernetes.default.svc', sub: 'system:serviceaccount:shop:orders', aud, jti, iat: now, exp: now + 3600 })}.c2ln`;
}

/** Writes a file whole, the way a rotation must appear (never half written). */
async function writeAtomically(path: string, content: string): Promise<void> {
  await writeFile(`${path}.tmp`, content);
  await rename(`${path}.tmp`, path);
}

/** What one STS request carried, whatever its encoding. */
function sent(r: StsRequest): { subjectToken: string; audience: string | undefined; json: boolean } {
  if (String(r.headers['content-type']).startsWith('application/json')) {
    const body = JSON.parse(r.body) as Record<string, unknown>;
    return { subjectToken: String(body['subjectToken']), audience: body['audience'] as string | undefined, json: true };
  }
  return { subjectToken: r.form.get('subject_token') ?? '', audience: r.form.get('audience') ?? undefined, json: false };
}

function subjectAudiences(sts: FakeSts): Set<string> {
  return new Set(sts.received.map((r) => String(decodeJwt(sent(r).subjectToken).aud)));
}

async function get(url: string): Promise<number> {
  const res = await request(url);
  await res.body.dump();
  return res.statusCode;
}

interface TwoIdentities {
  readonly internal: FakeSts;
  readonly google: FakeSts;
  readonly files: { internal: string; google: string; reports: string };
  readonly tokens: { internal: string; google: string; reports: string };
}

async function twoIdentities(t: { after(fn: () => unknown): void }): Promise<TwoIdentities> {
  const own = closeAfter(t);
  const internal = own(await startFakeSts({ prefix: 'internal' }));
  const google = own(await startFakeSts({ prefix: 'google' }));
  const dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-profiles-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files = { internal: join(dir, 'internal'), google: join(dir, 'google'), reports: join(dir, 'reports') };
  const tokens = { internal: projectedToken('sts.internal', 'i1'), google: projectedToken(GOOGLE_AUDIENCE, 'g1'), reports: projectedToken('reports-sts', 'r1') };
  for (const k of ['internal', 'google', 'reports'] as const) await writeFile(files[k], `${tokens[k]}\n`);
  return { internal, google, files, tokens };
}

describe('STS profiles: two identities in one pod (issue 13)', () => {
  it('each route is exchanged at its profile with its own subject token and audience, under concurrent traffic', async (t) => {
    const own = closeAfter(t);
    const { internal, google, files, tokens } = await twoIdentities(t);
    const upstream = own(await startUpstream());
    const h = own(await startHarness({
      subjectToken: { file: files.internal, type: TOKEN_TYPE_JWT },
      sts: { url: internal.tokenUrl },
      stsProfiles: { google: { url: google.tokenUrl, encoding: 'json', subjectToken: { file: files.google } } },
      routes: [
        { name: 'orders', listen: '127.0.0.1:0', upstream: upstream.url, audience: 'https://orders.internal' },
        { name: 'storage', listen: '127.0.0.1:0', upstream: upstream.url, sts: 'google', audience: GOOGLE_AUDIENCE },
        // The default profile with a subject token of its own (another projected token).
        { name: 'reports', listen: '127.0.0.1:0', upstream: upstream.url, audience: 'https://reports.internal', subjectToken: { file: files.reports } },
      ],
    }));
    const routes = ['orders', 'storage', 'reports'];
    const statuses = await Promise.all(Array.from({ length: 60 }, (_, i) => get(`${h.sidecar.routeUrls[routes[i % 3]!]}/${routes[i % 3]}`)));
    assert.deepEqual(new Set(statuses), new Set([200]));

    // Each upstream request carried the token of its route's STS.
    for (const r of upstream.requests) {
      const route = r.url.slice(1);
      assert.match(String(r.headers.authorization), route === 'storage' ? /^Bearer google-/ : /^Bearer internal-/, route);
    }
    // One exchange per route (the eager warm-up); concurrency added none.
    assert.equal(internal.received.length, 2);
    assert.equal(google.received.length, 1);

    const atGoogle = sent(google.received[0]!);
    assert.equal(atGoogle.json, true, 'the google profile sends JSON');
    assert.equal(atGoogle.subjectToken, tokens.google);
    assert.equal(atGoogle.audience, GOOGLE_AUDIENCE);
    assert.deepEqual(subjectAudiences(google), new Set([GOOGLE_AUDIENCE]));

    const atInternal = new Map(internal.received.map((r) => [sent(r).audience, sent(r)]));
    assert.equal(atInternal.get('https://orders.internal')?.subjectToken, tokens.internal);
    assert.equal(atInternal.get('https://reports.internal')?.subjectToken, tokens.reports);
    assert.ok([...atInternal.values()].every((s) => !s.json), 'the default profile sends a form');
    assert.deepEqual(subjectAudiences(internal), new Set(['sts.internal', 'reports-sts']));
    // At debug level, no subject token and no issued token in the logs.
    const logged = h.logs.join('');
    for (const secret of [...Object.values(tokens), ...internal.issued, ...google.issued]) assert.ok(!logged.includes(secret), 'a token was logged');
    // What /status shows: each route's profile.
    assert.deepEqual(h.sidecar.tokens.status().map((s) => [s.route, s.sts, s.valid]), [['orders', 'default', true], ['storage', 'google', true], ['reports', 'default', true]]);
  });

  it('each profile has its own client auth, trust and actor token', async (t) => {
    const own = closeAfter(t);
    const pki = createTestPki();
    const internal = own(await startFakeSts({ prefix: 'internal' }));
    const google = own(await startFakeSts({ prefix: 'google', tls: { cert: pki.server.certPem, key: pki.server.keyPem } }));
    const { files } = await twoIdentities(t);
    const caFile = join(await mkdtemp(join(tmpdir(), 'sts-sidecar-profiles-ca-')), 'ca.pem');
    t.after(() => rm(join(caFile, '..'), { recursive: true, force: true }));
    await writeFile(caFile, pki.ca.certPem);
    const upstream = own(await startUpstream());
    const h = own(await startHarness({
      subjectToken: { file: files.internal },
      sts: {
        url: internal.tokenUrl,
        clientAuth: { method: 'client_secret_basic', clientId: 'orders-app', clientSecret: { value: 'internal-secret' } },
        actorToken: { value: 'actor-of-default', type: TOKEN_TYPE_JWT },
      },
      stsProfiles: {
        google: { url: google.tokenUrl, encoding: 'json', ca: caFile, subjectToken: { file: files.google } },
        // The same https STS without its CA: trust is the profile's own, not borrowed from another.
        untrusted: { url: google.tokenUrl, encoding: 'json', subjectToken: { file: files.google } },
      },
      routes: [
        { name: 'orders', listen: '127.0.0.1:0', upstream: upstream.url },
        { name: 'storage', listen: '127.0.0.1:0', upstream: upstream.url, sts: 'google' },
        { name: 'elsewhere', listen: '127.0.0.1:0', upstream: upstream.url, sts: 'untrusted', lazy: true },
      ],
    }));
    const atInternal = internal.received[0]!;
    assert.match(String(atInternal.headers.authorization), /^Basic /);
    assert.equal(atInternal.form.get('actor_token'), 'actor-of-default');
    assert.equal(google.received.length, 1);
    const atGoogle = google.received[0]!;
    assert.equal(atGoogle.headers.authorization, undefined, 'no client auth for the google profile');
    assert.equal((JSON.parse(atGoogle.body) as Record<string, unknown>)['actorToken'], undefined, 'no actor token for the google profile');

    assert.equal(await get(`${h.sidecar.routeUrls['storage']}/`), 200);
    assert.equal(await get(`${h.sidecar.routeUrls['elsewhere']}/`), 503);
    assert.equal(google.received.length, 1, 'the untrusted profile never got past TLS');
    assert.equal(h.sidecar.tokens.status().find((s) => s.route === 'elsewhere')!.lastErrorCode, 'ERR_STS_UNREACHABLE');
  });

  it('rotating one subject-token file re-exchanges only the routes that use it; identical configs share one source', async (t) => {
    const own = closeAfter(t);
    const { internal, google, files } = await twoIdentities(t);
    const upstream = own(await startUpstream());
    const googleToken = { file: files.google, pollIntervalSeconds: 0.1 };
    const h = own(await startHarness({
      subjectToken: { file: files.internal, pollIntervalSeconds: 0.1 },
      sts: { url: internal.tokenUrl },
      stsProfiles: { google: { url: google.tokenUrl, encoding: 'json', subjectToken: googleToken } },
      routes: [
        { name: 'orders', listen: '127.0.0.1:0', upstream: upstream.url, audience: 'https://orders.internal' },
        { name: 'storage', listen: '127.0.0.1:0', upstream: upstream.url, sts: 'google', audience: GOOGLE_AUDIENCE },
        // The default profile, but the google token file: the same source as the profile's.
        { name: 'bigquery', listen: '127.0.0.1:0', upstream: upstream.url, audience: 'https://bigquery.internal', subjectToken: googleToken },
      ],
    }));
    assert.equal(internal.received.length, 2);
    assert.equal(google.received.length, 1);

    const rotated = projectedToken(GOOGLE_AUDIENCE, 'g2');
    await writeAtomically(files.google, `${rotated}\n`);
    await eventually(() => google.received.length === 2 && internal.received.length === 3, {
      what: () => `one re-exchange at each STS (google ${google.received.length}, internal ${internal.received.length})`,
    });
    assert.equal(sent(google.received[1]!).subjectToken, rotated);
    const reexchanged = sent(internal.received[2]!);
    assert.equal(reexchanged.subjectToken, rotated);
    assert.equal(reexchanged.audience, 'https://bigquery.internal');
    // The rotated routes now carry the new tokens; orders still has its first.
    assert.equal(await get(`${h.sidecar.routeUrls['storage']}/`), 200);
    assert.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${google.issued[1]}`);
    assert.equal(await get(`${h.sidecar.routeUrls['bigquery']}/`), 200);
    assert.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${internal.issued[2]}`);
    assert.equal(await get(`${h.sidecar.routeUrls['orders']}/`), 200);
    assert.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${internal.issued[0]}`);
    assert.equal(internal.received.length, 3, 'orders (the other subject token) was not re-exchanged');
    // One watched source for the two identical configs: the change is read (and logged) once.
    const changes = parsedLogs(h.logs).filter((l) => String(l['msg']).startsWith('subject token changed'));
    assert.equal(changes.length, 1);
    assert.equal(changes[0]!['key'], 'stsProfiles.google.subjectToken');
  });

  it('the token endpoint (callers: pod-token) serves a route only to a caller presenting that route\'s subject token', async (t) => {
    const own = closeAfter(t);
    const { internal, google, files, tokens } = await twoIdentities(t);
    const h = own(await startHarness({
      subjectToken: { file: files.internal },
      sts: { url: internal.tokenUrl },
      stsProfiles: { google: { url: google.tokenUrl, encoding: 'json', subjectToken: { file: files.google } } },
      routes: [
        { name: 'orders', audience: 'https://orders.internal' },
        { name: 'storage', sts: 'google', audience: GOOGLE_AUDIENCE },
      ],
      tokenEndpoint: { listen: '127.0.0.1:0', callers: 'pod-token' },
    }));
    const ask = async (subjectToken: string, audience: string) => {
      const res = await request(`${h.sidecar.endpointUrls.token}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
          subject_token: subjectToken,
          subject_token_type: TOKEN_TYPE_JWT,
          audience,
        }).toString(),
      });
      const body = (await res.body.json()) as Record<string, unknown>;
      return { status: res.statusCode, error: body['error'], accessToken: body['access_token'] };
    };
    const orders = await ask(tokens.internal, 'https://orders.internal');
    assert.equal(orders.status, 200);
    assert.match(String(orders.accessToken), /^internal-/);
    const storage = await ask(tokens.google, GOOGLE_AUDIENCE);
    assert.equal(storage.status, 200);
    assert.match(String(storage.accessToken), /^google-/);
    // A pod token, but another route's: refused before any token is handed out.
    assert.deepEqual(await ask(tokens.internal, GOOGLE_AUDIENCE), { status: 400, error: 'invalid_grant', accessToken: undefined });
    assert.deepEqual(await ask(tokens.google, 'https://orders.internal'), { status: 400, error: 'invalid_grant', accessToken: undefined });
    assert.equal((await ask('not-a-pod-token', GOOGLE_AUDIENCE)).error, 'invalid_grant');
  });
});

describe('STS profile configuration errors name the key path (issue 13)', () => {
  const base = {
    subjectToken: { file: '/var/run/secrets/tokens/sts-token' },
    sts: { url: 'https://sts.internal/token' },
  };
  const paths = (input: unknown) => configProblems(input).map((p) => p.path);

  it('a route naming no profile: routes[N].sts, listing the known ones', () => {
    const problems = configProblems({
      ...base,
      stsProfiles: { google: { url: 'https://sts.googleapis.com/v1/token' } },
      routes: [
        { name: 'a', host: 'a.internal', upstream: 'https://a.internal' },
        { name: 'b', host: 'b.internal', upstream: 'https://b.internal', sts: 'google' },
        { name: 'c', host: 'c.internal', upstream: 'https://c.internal', sts: 'gogle' },
      ],
    });
    assert.deepEqual(problems.map((p) => p.path), ['routes[2].sts']);
    assert.ok(['default', 'google', 'gogle'].every((name) => problems[0]!.problem.includes(name)), 'names the profile asked for and the known ones');
  });

  it('a profile is checked like sts, at its own key path', () => {
    const routes = [{ name: 'a', host: 'a.internal', upstream: 'https://a.internal', sts: 'other' }];
    assert.deepEqual(paths({ ...base, stsProfiles: { other: { encoding: 'json' } }, routes }), ['stsProfiles.other.url']);
    assert.deepEqual(paths({ ...base, stsProfiles: { other: { url: 'http://sts.example.com/token' } }, routes }), ['stsProfiles.other.url']);
    assert.deepEqual(paths({ ...base, stsProfiles: { other: { url: 'https://sts.example.com/token', clientAuth: { method: 'tls_client_auth', clientId: 'x' } } }, routes }), [
      'stsProfiles.other.clientAuth.method',
    ]);
    assert.deepEqual(paths({ ...base, stsProfiles: { other: { url: 'https://sts.example.com/token', subjectToken: { file: 'a', env: 'B' } } }, routes }), ['stsProfiles.other.subjectToken']);
    assert.deepEqual(paths({ ...base, stsProfiles: { other: { url: 'https://sts.example.com/token', bogus: 1 } }, routes }), ['stsProfiles.other.bogus']);
  });

  it('"default" is the top-level sts, not a profile name; a route subject token takes exactly one source', () => {
    const routes = [{ name: 'a', host: 'a.internal', upstream: 'https://a.internal', subjectToken: { file: 'x', value: 'y' } }];
    assert.deepEqual(paths({ ...base, stsProfiles: { default: { url: 'https://sts.example.com/token' } }, routes }), ['routes[0].subjectToken', 'stsProfiles.default']);
  });

  it('a config without profiles is what it was: every route uses the default profile', () => {
    assert.deepEqual(paths({ ...base, routes: [{ name: 'a', host: 'a.internal', upstream: 'https://a.internal' }] }), []);
  });
});

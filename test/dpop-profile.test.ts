/**
 * Issue 16: `binding: dpop` on an STS profile (`sts.binding`, `stsProfiles.NAME.binding`) binds
 * every route at that profile. The precedence rule (config/dpop-schema.ts `resolveBinding`): a
 * route's own `binding: dpop` binds it, its `auto` defers to the profile, and `allowBearer` is the
 * route's, else the profile's. Checked as config, as the reload fingerprint, and end to end with
 * the reference STS and resource servers using the exported verifier.
 */
import { after, before, describe, it, test } from 'node:test';
import { strict as assert } from 'node:assert';
import type { ServerResponse } from 'node:http';
import { decodeJwt } from 'jose';
import { request } from 'undici';
import { routeFingerprints } from '../src/cache/from-config.js';
import { parseConfig } from '../src/config/load.js';
import { createWorkloadIssuer, startDevSts, type DevSts } from '../src/devsts/index.js';
import type { BoundTokenError } from '../src/errors.js';
import { effectiveBinding, usesDpop } from '../src/sts/profiles.js';
import { DpopReplayCache, verifyDpopRequest } from '../src/verify.js';
import { configProblems } from './helpers/config-problems.js';
import { parsedLogs, startHarness, startUpstream, TOKEN_TYPE_JWT, type SidecarHarness, type TestUpstream } from './helpers/harness.js';

const STS = { url: 'http://127.0.0.1:9/token' };
const base = { subjectToken: { value: 's' }, sts: STS };
const route = (name: string, more: Record<string, unknown> = {}) => ({ name, listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:9', ...more });
const paths = (input: unknown) => configProblems(input).map((p) => p.path);
const bindings = (input: Record<string, unknown>) => {
  const config = parseConfig(input);
  return Object.fromEntries(config.routes.map((r) => [r.name, effectiveBinding(config, r)]));
};

describe('issue 16 config: binding on an STS profile', () => {
  test('a DPoP profile binds its routes; a route on another profile stays as it says; allowBearer: route, else profile, else false', () => {
    const config = {
      ...base,
      stsProfiles: { bound: { url: STS.url, binding: 'dpop', dpop: { allowBearer: true } }, plain: { url: STS.url } },
      routes: [
        route('inherits', { sts: 'bound' }),
        route('strict', { sts: 'bound', dpop: { allowBearer: false } }),
        route('own', { sts: 'plain', binding: 'dpop' }),
        route('other', { sts: 'plain' }),
        route('default'),
      ],
    };
    assert.deepEqual(bindings(config), {
      inherits: { binding: 'dpop', allowBearer: true, boundBy: 'profile' },
      strict: { binding: 'dpop', allowBearer: false, boundBy: 'profile' },
      own: { binding: 'dpop', allowBearer: false, boundBy: 'route' },
      other: { binding: 'auto', allowBearer: false },
      default: { binding: 'auto', allowBearer: false },
    });
    assert.equal(usesDpop(parseConfig(config)), true);
  });

  test('the top-level sts is the profile `default`: sts.binding dpop binds the routes without routes[].sts', () => {
    const config = { ...base, sts: { ...STS, binding: 'dpop' }, stsProfiles: { plain: { url: STS.url } }, routes: [route('a'), route('b', { sts: 'plain' })] };
    const b = bindings(config);
    assert.equal(b['a']!.binding, 'dpop');
    assert.equal(b['b']!.binding, 'auto');
    // Defaults: auto everywhere, no DPoP key needed.
    const plain = parseConfig({ ...base, routes: [route('a')] });
    assert.equal(plain.sts.binding, 'auto');
    assert.equal(usesDpop(plain), false);
  });

  test('refused, with key paths: profile dpop without binding dpop, route dpop on an unbound route, a token-only or non-Authorization route bound by its profile, an unknown value', () => {
    const tokenEndpoint = { listen: '127.0.0.1:0', callers: 'loopback' };
    assert.deepEqual(paths({ ...base, sts: { ...STS, dpop: { allowBearer: true } }, routes: [route('a')] }), ['sts.dpop']);
    assert.deepEqual(paths({ ...base, stsProfiles: { p: { url: STS.url, dpop: {} } }, routes: [route('a')] }), ['stsProfiles.p.dpop']);
    assert.deepEqual(paths({ ...base, stsProfiles: { p: { url: STS.url, binding: 'bearer' } }, routes: [route('a')] }), ['stsProfiles.p.binding']);
    assert.deepEqual(paths({ ...base, stsProfiles: { p: { url: STS.url } }, routes: [route('a', { sts: 'p', dpop: { allowBearer: true } })] }), ['routes[0].dpop']);
    // Bound through its profile: the error names the route's `sts` (what bound it), not its `binding`.
    assert.deepEqual(paths({ ...base, tokenEndpoint, stsProfiles: { p: { url: STS.url, binding: 'dpop' } }, routes: [{ name: 'bare', sts: 'p' }] }), ['routes[0].sts']);
    assert.deepEqual(paths({ ...base, tokenEndpoint, sts: { ...STS, binding: 'dpop' }, routes: [{ name: 'bare' }] }), ['routes[0].sts']);
    assert.deepEqual(paths({ ...base, tokenEndpoint, routes: [{ name: 'bare', binding: 'dpop' }] }), ['routes[0].binding']);
    assert.deepEqual(
      paths({ ...base, stsProfiles: { p: { url: STS.url, binding: 'dpop' } }, routes: [route('a', { sts: 'p', authorization: { header: 'X-Token' } })] }),
      ['routes[0].authorization.header'],
    );
    // Accepted: a route's dpop under a DPoP profile, and a route's binding dpop under an auto profile.
    assert.deepEqual(paths({ ...base, sts: { ...STS, binding: 'dpop' }, routes: [route('a', { dpop: { allowBearer: true } })] }), []);
    assert.deepEqual(paths({ ...base, routes: [route('a', { binding: 'dpop', dpop: {} })] }), []);
  });

  test('a reload that changes a profile binding changes the fingerprints of the routes at that profile only', () => {
    const config = (binding: string) =>
      parseConfig({ ...base, stsProfiles: { p: { url: STS.url, binding } }, routes: [route('at-p', { sts: 'p' }), route('at-default')] });
    const before = routeFingerprints(config('auto'));
    const after = routeFingerprints(config('dpop'));
    assert.notEqual(after.get('at-p'), before.get('at-p'));
    assert.equal(after.get('at-default'), before.get('at-default'));
  });
});

const workload = createWorkloadIssuer({ issuer: 'https://kubernetes.default.svc' });
const AUDIENCE = 'https://api.internal';
type Verdict = { status: number; code?: string };

describe('issue 16: a DPoP profile with the reference STS and the exported verifier', () => {
  let sts: DevSts;
  let orders: TestUpstream;
  let billing: TestUpstream;
  let legacy: TestUpstream;
  let h: SidecarHarness;
  const replay = new DpopReplayCache();

  /** A resource server that accepts only DPoP-bound tokens with a valid proof (RFC 9449 section 7.1). */
  const verifying = (origin: () => string) => (req: { method: string; url: string; headers: Record<string, unknown> }, res: ServerResponse) =>
    void verifyDpopRequest({ method: req.method, headers: req.headers as never }, `${origin()}${req.url}`, {
      jwks: sts.publicJwks,
      issuer: sts.issuer,
      audience: AUDIENCE,
      replayCache: replay,
    }).then(
      () => answer(res, { status: 200 }),
      (err: unknown) => answer(res, { status: 401, code: (err as BoundTokenError).code }),
    );
  const answer = (res: ServerResponse, v: Verdict) => {
    res.writeHead(v.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(v));
  };

  before(async () => {
    sts = await startDevSts({ trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }], dpopNonce: true });
    orders = await startUpstream({ respond: verifying(() => orders.url) });
    billing = await startUpstream({ respond: verifying(() => billing.url) });
    legacy = await startUpstream();
    h = await startHarness({
      subjectToken: { value: await workload.mint({ sub: 'system:serviceaccount:apps:orders', aud: 'sts' }), type: TOKEN_TYPE_JWT },
      sts: { url: sts.tokenUrl },
      stsProfiles: { bound: { url: sts.tokenUrl, binding: 'dpop' } },
      routes: [
        { name: 'orders', listen: '127.0.0.1:0', upstream: orders.url, audience: AUDIENCE, sts: 'bound' },
        { name: 'billing', listen: '127.0.0.1:0', upstream: billing.url, audience: AUDIENCE, sts: 'bound', binding: 'auto' },
        { name: 'legacy', listen: '127.0.0.1:0', upstream: legacy.url, audience: AUDIENCE },
      ],
    });
  });
  after(async () => {
    await h?.close();
    await Promise.all([orders?.close(), billing?.close(), legacy?.close(), sts?.close()]);
  });

  const sidecarJkt = () => parsedLogs(h.logs).map((l) => (l['dpopKey'] as { jkt?: string } | undefined)?.jkt).find(Boolean)!;

  it('both routes at the DPoP profile send DPoP-bound tokens with proofs the verifier accepts', async () => {
    for (const [name, upstream] of [['orders', orders], ['billing', billing]] as const) {
      const res = await request(`${h.sidecar.routeUrls[name]}/items?id=1`);
      assert.deepEqual(await res.body.json(), { status: 200 }, name);
      const seen = upstream.requests.at(-1)!;
      assert.match(String(seen.headers.authorization), /^DPoP /, name);
      const token = String(seen.headers.authorization).slice('DPoP '.length);
      assert.deepEqual(decodeJwt(token)['cnf'], { jkt: sidecarJkt() }, name);
    }
  });

  it('a route at another profile stays Bearer, without a proof', async () => {
    const res = await request(`${h.sidecar.routeUrls['legacy']}/old`);
    assert.equal(res.statusCode, 200);
    await res.body.text();
    const seen = legacy.requests.at(-1)!;
    assert.match(String(seen.headers.authorization), /^Bearer /);
    assert.equal(seen.headers.dpop, undefined);
    assert.equal(decodeJwt(String(seen.headers.authorization).slice('Bearer '.length))['cnf'], undefined);
  });

  it('/status and sts_sidecar_route_binding_info show the binding in effect', async () => {
    const status = (await (await request(`${h.sidecar.adminUrl}/status`)).body.json()) as { routes: Array<{ name: string; binding: string }> };
    assert.deepEqual(Object.fromEntries(status.routes.map((r) => [r.name, r.binding])), { orders: 'dpop', billing: 'dpop', legacy: 'auto' });
    const metrics = await (await request(`${h.sidecar.adminUrl}/metrics`)).body.text();
    assert.match(metrics, /sts_sidecar_route_binding_info\{route="orders",binding="dpop"\} 1/);
    assert.match(metrics, /sts_sidecar_route_binding_info\{route="billing",binding="dpop"\} 1/);
    assert.match(metrics, /sts_sidecar_route_binding_info\{route="legacy",binding="none"\} 1/);
  });
});

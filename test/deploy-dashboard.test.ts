/**
 * The Grafana dashboard and the Prometheus rules name only metrics (and labels) that a
 * running sidecar really exports: a real sidecar with a workload identity is driven
 * through success, an unmatched host, an upstream 401 and an STS that binds tokens to
 * another certificate, so every series exists; its /metrics is scraped, and every
 * PromQL expression is checked against what came back.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { createCertificateAuthority } from '../src/pki/certificates.js';
import { startHarness, startUpstream } from './helpers/harness.js';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { tempDir } from './helpers/loopback.js';
import { isObj, readYaml, repoPath, type Obj } from './helpers/manifests.js';
import { namesIn, parseExposition, type ExposedMetrics } from './helpers/promql.js';

/** Labels Prometheus adds at scrape time, and the histogram bucket label. */
const TARGET_LABELS = new Set(['job', 'instance']);

interface Query {
  readonly where: string;
  readonly expr: string;
}

function dashboardQueries(dashboard: Obj): Query[] {
  const out: Query[] = [];
  const visit = (panels: unknown[], path: string) => {
    for (const p of panels.filter(isObj)) {
      const title = `${path}${String(p['title'])}`;
      for (const t of ((p['targets'] as unknown[]) ?? []).filter(isObj)) {
        if (typeof t['expr'] === 'string') out.push({ where: `panel "${title}" ${String(t['refId'])}`, expr: t['expr'] });
      }
      if (Array.isArray(p['panels'])) visit(p['panels'], `${title} / `);
    }
  };
  visit((dashboard['panels'] as unknown[]) ?? [], '');
  for (const v of (((dashboard['templating'] as Obj | undefined)?.['list'] as unknown[]) ?? []).filter(isObj)) {
    const query = isObj(v['query']) ? v['query']['query'] : v['query'];
    const inner = /^label_values\((.*),\s*\w+\)$/.exec(String(query))?.[1];
    if (inner) out.push({ where: `variable $${String(v['name'])}`, expr: inner });
  }
  return out;
}

async function ruleQueries(file: string): Promise<Query[]> {
  const rules = await readYaml(file);
  return ((rules['groups'] as Obj[]) ?? []).flatMap((g) =>
    ((g['rules'] as Obj[]) ?? []).map((r) => ({ where: `rule ${String(r['alert'] ?? r['record'])}`, expr: String(r['expr']) })),
  );
}

/** Every problem with one expression against the scrape: unknown metrics, unknown labels. */
function problems(q: Query, exposed: ExposedMetrics): string[] {
  const out: string[] = [];
  const { selectors, groupingLabels } = namesIn(q.expr);
  if (selectors.length === 0) out.push(`${q.where}: names no metric`);
  const inExpression = new Set<string>(TARGET_LABELS);
  for (const s of selectors) {
    if (!exposed.names.has(s.metric)) {
      out.push(`${q.where}: ${s.metric || '(no name)'} is not exported`);
      continue;
    }
    const seen = exposed.labels.get(s.metric) ?? new Set<string>();
    for (const l of seen) inExpression.add(l);
    for (const l of s.labels) if (!seen.has(l) && !TARGET_LABELS.has(l)) out.push(`${q.where}: ${s.metric} has no label ${l}`);
  }
  for (const l of groupingLabels) if (!inExpression.has(l)) out.push(`${q.where}: groups by ${l}, which none of its metrics has`);
  return out;
}

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/**
 * An STS that answers audience https://bound.internal with a JWT bound to a certificate the
 * sidecar does not hold (the sidecar reads cnf without verifying a signature it has no key
 * for), and any other audience with an opaque token.
 */
function startBindingSts(): Promise<FakeSts> {
  return startFakeSts({
    lifetimeSeconds: 300,
    makeToken: (_n, request) => {
      const exp = Math.floor(Date.now() / 1000) + 300;
      return request.form.getAll('audience').includes('https://bound.internal')
        ? `${b64url({ alg: 'ES256', typ: 'at+jwt' })}.${b64url({ sub: 'x', exp, cnf: { 'x5t#S256': 'A'.repeat(43) } })}.${'c'.repeat(86)}`
        : `opaque-token-${'x'.repeat(24)}`;
    },
  });
}

describe('Grafana dashboard and Prometheus rules against a live /metrics', () => {
  let exposed: ExposedMetrics;
  let dashboard: Obj;

  before(async () => {
    const sts = await startBindingSts();
    const dir = await tempDir('dashboard-identity-');
    const ca = createCertificateAuthority({ commonName: 'dashboard test CA' });
    const leaf = ca.issue({ commonName: 'orders-client', usage: 'client' });
    await writeFile(join(dir.path, 'tls.crt'), leaf.certPem);
    await writeFile(join(dir.path, 'tls.key'), leaf.keyPem);
    await writeFile(join(dir.path, 'ca.crt'), ca.certPem);
    let refused = 0;
    // The first request of /refuse-once gets 401: the sidecar drops the token and retries once.
    const upstream = await startUpstream((req, res) => {
      if (req.url === '/refuse-once' && refused++ === 0) {
        res.writeHead(401);
        return void res.end();
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
    const harness = await startHarness({
      subjectToken: { value: 'subject-token-for-dashboard-test', type: 'urn:ietf:params:oauth:token-type:access_token' },
      sts: { url: sts.tokenUrl },
      identity: { cert: join(dir.path, 'tls.crt'), key: join(dir.path, 'tls.key'), ca: join(dir.path, 'ca.crt') },
      tokenEndpoint: { listen: '127.0.0.1:0', callers: 'loopback', routes: ['orders'] },
      routes: [
        { name: 'orders', host: 'orders.internal', upstream: upstream.url, audience: 'https://orders.internal' },
        { name: 'bound', host: 'bound.internal', upstream: upstream.url, audience: 'https://bound.internal', lazy: true },
      ],
    });
    after(async () => {
      await harness.close();
      await upstream.close();
      await sts.close();
      await dir.cleanup();
    });
    const { proxyUrl, adminUrl } = harness.sidecar;
    for (const [host, path, status] of [
      ['orders.internal', '/ok', 200],
      ['orders.internal', '/refuse-once', 200],
      ['elsewhere.example', '/', 404],
      // Bound to another certificate twice: never sent, the request fails closed.
      ['bound.internal', '/', 503],
    ] as const) {
      const res = await request(`${proxyUrl}${path}`, { headers: { host } });
      await res.body.dump();
      assert.equal(res.statusCode, status, `${host}${path}`);
    }
    // An SDK client asking the local token endpoint (RFC 8693) for the orders audience.
    const exchange = await request(`${harness.sidecar.endpointUrls.token!}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: 'anything',
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        audience: 'https://orders.internal',
      }).toString(),
    });
    await exchange.body.dump();
    assert.equal(exchange.statusCode, 200, 'the local token endpoint');
    const scrape = await request(`${adminUrl}/metrics`);
    exposed = parseExposition(await scrape.body.text());
    dashboard = JSON.parse(await readFile(repoPath('deploy', 'grafana', 'dashboards', 'sts-sidecar.json'), 'utf8')) as Obj;
  });

  it('the scrape has every sts_sidecar series the dashboard is about', () => {
    for (const name of [
      'sts_sidecar_sts_exchanges_total',
      'sts_sidecar_sts_exchange_duration_seconds_bucket',
      'sts_sidecar_token_cache_hits_total',
      'sts_sidecar_token_cache_misses_total',
      'sts_sidecar_token_invalidations_total',
      'sts_sidecar_token_expiry_seconds',
      'sts_sidecar_token_valid',
      'sts_sidecar_proxy_requests_total',
      'sts_sidecar_proxy_request_duration_seconds_bucket',
      'sts_sidecar_proxy_upstream_401_retries_total',
      'sts_sidecar_token_binding_mismatches_total',
      'sts_sidecar_identity_certificate_expiry_seconds',
      'sts_sidecar_endpoint_requests_total',
      'sts_sidecar_endpoint_request_duration_seconds_bucket',
    ]) {
      assert.ok(exposed.labels.has(name), `no ${name} samples after the requests`);
    }
    assert.deepEqual([...exposed.labels.get('sts_sidecar_proxy_requests_total')!].sort(), ['binding', 'grpc_status', 'protocol', 'route', 'status_class']);
  });

  it('the PromQL reader finds names, matchers and groupings, and reports what is not exported', () => {
    const names = namesIn('sum by (le, route) (rate(a_bucket{route=~"$route", x!="y"}[$__rate_interval])) / on(route) group_left b offset 5m > 0.5');
    assert.deepEqual(names.selectors, [
      { metric: 'a_bucket', labels: ['route', 'x'] },
      { metric: 'b', labels: [] },
    ]);
    assert.deepEqual(names.groupingLabels, ['le', 'route', 'route']);
    assert.deepEqual(problems({ where: 'q', expr: 'rate(sts_sidecar_sts_exchanges{route="a"}[5m])' }, exposed), ['q: sts_sidecar_sts_exchanges is not exported']);
    assert.deepEqual(problems({ where: 'q', expr: 'sts_sidecar_token_valid{host="a"}' }, exposed), ['q: sts_sidecar_token_valid has no label host']);
    assert.deepEqual(problems({ where: 'q', expr: 'sum by (path) (sts_sidecar_token_valid)' }, exposed), ['q: groups by path, which none of its metrics has']);
  });

  it('every dashboard query names only exported metrics and their labels', () => {
    const queries = dashboardQueries(dashboard);
    assert.ok(queries.length >= 10, `${queries.length} queries`);
    assert.deepEqual(queries.flatMap((q) => problems(q, exposed)), []);
  });

  it('the dashboard covers exchanges and failures, exchange latency, cache hit ratio, expiry per route, requests by status', () => {
    const exprs = dashboardQueries(dashboard).map((q) => q.expr);
    const has = (re: RegExp, what: string) => assert.ok(exprs.some((e) => re.test(e)), what);
    has(/sts_sidecar_sts_exchanges_total\{[^}]*result!="success"/, 'failed exchanges');
    has(/sum by \(result\) \(rate\(sts_sidecar_sts_exchanges_total/, 'exchanges by result');
    has(/histogram_quantile\(0\.99, sum by \(le, route\) \(rate\(sts_sidecar_sts_exchange_duration_seconds_bucket/, 'exchange latency p99');
    has(/sts_sidecar_token_cache_hits_total.*\/.*sts_sidecar_token_cache_misses_total/s, 'cache hit ratio');
    has(/min by \(route\) \(sts_sidecar_token_expiry_seconds/, 'expiry per route');
    has(/sum by \(route, status_class\) \(rate\(sts_sidecar_proxy_requests_total/, 'requests by status class');
  });

  it('every recording and alerting rule names only exported metrics and their labels', async () => {
    const queries = await ruleQueries(repoPath('deploy', 'prometheus', 'alerts.yml'));
    assert.ok(queries.length >= 5);
    assert.deepEqual(queries.flatMap((q) => problems(q, exposed)), []);
  });

  it('panels query the provisioned Prometheus data source', async () => {
    const provisioned = await readYaml(repoPath('deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yml'));
    const uid = ((provisioned['datasources'] as Obj[])[0]!)['uid'];
    const panels = ((dashboard['panels'] as Obj[]) ?? []).filter((p) => p['type'] !== 'row');
    for (const p of panels) assert.equal((p['datasource'] as Obj)['uid'], uid, String(p['title']));
  });
});

/**
 * Issue 13: configuration reload. Real sidecars started from a config file, a real STS that
 * records every exchange, real HTTP/1.1 (undici) and HTTP/2 (node:http2, h2c prior knowledge)
 * clients keeping up load while the file changes underneath: no request may fail, and a route
 * whose exchange did not change must not be exchanged again.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2connect } from 'node:http2';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { Agent, request } from 'undici';
import { loadConfigFile } from '../src/config/load.js';
import { startSidecar, type Sidecar } from '../src/main.js';
import { eventually } from './helpers/eventually.js';
import { startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { parsedLogs, startUpstream, TOKEN_TYPE_ACCESS, type TestUpstream } from './helpers/harness.js';

interface RouteSpec {
  readonly name: string;
  readonly audience: string;
  readonly listen?: string;
}

function configText(sts: FakeSts, upstream: TestUpstream, routes: readonly RouteSpec[], extra: string[] = []): string {
  return [
    'proxy: { listen: "127.0.0.1:0" }',
    'admin: { listen: "127.0.0.1:0" }',
    'log: { level: debug }',
    `subjectToken: { value: iamtheeggman, type: "${TOKEN_TYPE_ACCESS}" }`,
    `sts: { url: "${sts.tokenUrl}" }`,
    ...extra,
    'routes:',
    ...routes.map((r) => `  - { name: ${r.name}, host: ${r.name}.internal, audience: ${r.audience}, upstream: "${upstream.url}"${r.listen ? `, listen: "${r.listen}"` : ''} }`),
  ].join('\n');
}

const exchangesFor = (sts: FakeSts, audience: string) => sts.requests.filter((f) => f.get('audience') === audience).length;

async function start(file: string, logs: string[], watchConfig = false): Promise<Sidecar> {
  return startSidecar(await loadConfigFile(file), {
    configFile: file,
    watchConfig,
    waitForTokens: true,
    logDestination: { write: (line: string) => void logs.push(line) },
  });
}

/** Keeps `workers` HTTP/1.1 and `streams` HTTP/2 clients busy until stopped; counts every outcome. */
function keepBusy(sidecar: Sidecar, host: string) {
  const outcomes = { ok: 0, failed: [] as string[] };
  let running = true;
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: 4 });
  const h1 = async () => {
    while (running) {
      try {
        const res = await request(`${sidecar.proxyUrl}/load`, { headers: { host }, dispatcher: agent });
        const body = await res.body.text();
        if (res.statusCode === 200 && body.includes('Bearer')) outcomes.ok += 1;
        else outcomes.failed.push(`h1 ${res.statusCode} ${body.slice(0, 80)}`);
      } catch (err) {
        outcomes.failed.push(`h1 ${(err as Error).message}`);
      }
    }
  };
  const session = h2connect(sidecar.proxyUrl);
  session.on('error', () => {});
  const h2 = async () => {
    while (running) {
      try {
        const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const stream = session.request({ ':path': '/load-h2', ':authority': host });
          let status = 0;
          let body = '';
          stream.on('response', (h) => (status = Number(h[':status'])));
          stream.on('data', (d: Buffer) => (body += d.toString()));
          stream.on('end', () => resolve({ status, body }));
          stream.on('error', reject);
          stream.end();
        });
        if (status === 200 && body.includes('Bearer')) outcomes.ok += 1;
        else outcomes.failed.push(`h2 ${status} ${body.slice(0, 80)}`);
      } catch (err) {
        outcomes.failed.push(`h2 ${(err as Error).message}`);
      }
    }
  };
  const loops = [h1(), h1(), h1(), h2(), h2()];
  let stopped: Promise<void> | undefined;
  return {
    outcomes,
    stop() {
      running = false;
      stopped ??= Promise.all(loops).then(async () => {
        session.close();
        await agent.close();
      });
      return stopped;
    },
  };
}

describe('configuration reload (issue 13)', () => {
  let dir: string;
  let sts: FakeSts;
  let upstream: TestUpstream;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-reload-'));
    sts = await startFakeSts({ lifetimeSeconds: 3600 });
    // Echoes the Authorization it received, so a client sees a token was injected.
    upstream = await startUpstream((req, res) => res.end(`auth=${req.headers['authorization'] ?? ''}`));
  });
  after(async () => {
    await upstream.close();
    await sts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('under HTTP/1.1 and HTTP/2 load: a route added, one removed, a listener moved; 0 failed requests, 0 extra exchanges', async () => {
    const file = join(dir, 'load.yaml');
    const orders = { name: 'orders', audience: 'aud-orders' };
    const billing = { name: 'billing', audience: 'aud-billing', listen: '127.0.0.1:0' };
    await writeFile(file, configText(sts, upstream, [orders, billing]));
    const logs: string[] = [];
    const sidecar = await start(file, logs);
    let load: ReturnType<typeof keepBusy> | undefined;
    try {
      const ordersBefore = exchangesFor(sts, 'aud-orders');
      assert.equal(ordersBefore, 1);
      const billingUrl = sidecar.routeUrls['billing']!;
      load = keepBusy(sidecar, 'orders.internal');
      await eventually(() => load!.outcomes.ok > 50, { what: 'load to be running' });

      // 1. A route added.
      await writeFile(file, configText(sts, upstream, [orders, billing, { name: 'audit', audience: 'aud-audit' }]));
      const added = await sidecar.reload();
      assert.equal(added.ok, true, JSON.stringify(added.problems));
      assert.deepEqual([...added.carriedRoutes].sort(), ['billing', 'orders']);
      const audit = await request(`${sidecar.proxyUrl}/x`, { headers: { host: 'audit.internal' } });
      assert.equal(audit.statusCode, 200);
      assert.match(await audit.body.text(), /Bearer /);

      // 2. The dedicated listener of billing moved to another loopback address.
      await writeFile(file, configText(sts, upstream, [orders, { ...billing, listen: '127.0.0.2:0' }, { name: 'audit', audience: 'aud-audit' }]));
      const moved = await sidecar.reload();
      assert.equal(moved.ok, true, JSON.stringify(moved.problems));
      const movedUrl = sidecar.routeUrls['billing']!;
      assert.match(movedUrl, /^http:\/\/127\.0\.0\.2:/);
      const viaMoved = await request(`${movedUrl}/x`);
      assert.equal(viaMoved.statusCode, 200);
      await viaMoved.body.dump();
      await eventually(() => request(`${billingUrl}/x`).then(() => false, (err: Error) => /ECONNREFUSED/.test(String(err.message ?? err))), {
        what: 'the old billing listener to close',
      });

      // 3. A route removed: its host is no longer routed.
      await writeFile(file, configText(sts, upstream, [orders, { ...billing, listen: '127.0.0.2:0' }]));
      const removed = await sidecar.reload();
      assert.equal(removed.ok, true, JSON.stringify(removed.problems));
      const gone = await request(`${sidecar.proxyUrl}/x`, { headers: { host: 'audit.internal' } });
      assert.notEqual(gone.statusCode, 200);
      await gone.body.dump();

      await eventually(() => load!.outcomes.ok > 200, { what: 'more load after the reloads' });
      await load.stop();
      assert.deepEqual(load.outcomes.failed, []);
      assert.ok(load.outcomes.ok > 200);
      assert.equal(sidecar.generation, 4);
      // Unchanged routes were never exchanged again: their tokens were carried over.
      assert.equal(exchangesFor(sts, 'aud-orders'), ordersBefore);
      assert.equal(exchangesFor(sts, 'aud-billing'), 1);
      assert.equal(exchangesFor(sts, 'aud-audit'), 1);

      const metrics = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
      assert.match(metrics, /sts_sidecar_config_reloads_total\{result="success"\} 3/);
      assert.match(metrics, /sts_sidecar_config_generation 4/);
      assert.ok(parsedLogs(logs).some((l) => l['msg'] === 'configuration reloaded' && l['generation'] === 4));
    } finally {
      await load?.stop();
      await sidecar.close(0);
    }
  });

  it('a broken file is refused with its key paths and the previous configuration keeps serving; readiness is unaffected', async () => {
    const file = join(dir, 'broken.yaml');
    const orders = { name: 'orders', audience: 'aud-broken' };
    await writeFile(file, configText(sts, upstream, [orders]));
    const logs: string[] = [];
    const sidecar = await start(file, logs);
    try {
      await writeFile(file, configText(sts, upstream, [orders]).replace('routes:', 'routez: 1\nroutes:').replace('audience: aud-broken', 'audience: 7, upstreamTimeoutSeconds: -1'));
      const result = await sidecar.reload();
      assert.equal(result.ok, false);
      const paths = result.problems.map((p) => p.path);
      assert.ok(paths.includes('routez'), JSON.stringify(paths));
      assert.ok(paths.includes('routes[0].upstreamTimeoutSeconds'), JSON.stringify(paths));
      await writeFile(file, 'routes: [ {');
      const yaml = await sidecar.reload();
      assert.equal(yaml.ok, false);
      assert.equal(sidecar.generation, 1);

      const res = await request(`${sidecar.proxyUrl}/x`, { headers: { host: 'orders.internal' } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal((await request(`${sidecar.adminUrl}/readyz`)).statusCode, 200);
      const metrics = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
      assert.match(metrics, /sts_sidecar_config_reloads_total\{result="failure"\} 2/);
      assert.match(metrics, /sts_sidecar_config_generation 1/);
      const refused = parsedLogs(logs).filter((l) => l['msg'] === 'configuration reload refused; the previous configuration keeps serving');
      assert.ok(refused.some((l) => l['key'] === 'routes[0].upstreamTimeoutSeconds'));
    } finally {
      await sidecar.close(0);
    }
  });

  it('a listener that cannot be bound fails the reload and leaves everything as it was', async () => {
    const file = join(dir, 'bind.yaml');
    const blocker = await startUpstream();
    const taken = new URL(blocker.url).port;
    const orders = { name: 'orders', audience: 'aud-bind' };
    await writeFile(file, configText(sts, upstream, [orders]));
    const sidecar = await start(file, []);
    try {
      await writeFile(file, configText(sts, upstream, [orders, { name: 'extra', audience: 'aud-extra', listen: `127.0.0.1:${taken}` }]));
      const result = await sidecar.reload();
      assert.equal(result.ok, false);
      assert.equal(result.problems[0]?.path, 'routes[1].listen');
      const res = await request(`${sidecar.proxyUrl}/x`, { headers: { host: 'orders.internal' } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal(exchangesFor(sts, 'aud-extra'), 0);
    } finally {
      await sidecar.close(0);
      await blocker.close();
    }
  });

  it('a reload keeps the DPoP key (issue 16): a DPoP route keeps its token, so no exchange is needed', async () => {
    const file = join(dir, 'dpop.yaml');
    const dpopRoute = (extra = '') =>
      configText(sts, upstream, [{ name: 'orders', audience: 'aud-dpop-keep' }], ['dpop: { algorithm: ES256 }']).replace(
        'audience: aud-dpop-keep,',
        `audience: aud-dpop-keep, binding: dpop, dpop: { allowBearer: true },`,
      ) + extra;
    await writeFile(file, dpopRoute());
    const sidecar = await start(file, []);
    try {
      const call = async () => {
        const res = await request(`${sidecar.proxyUrl}/x`, { headers: { host: 'orders.internal' } });
        assert.equal(res.statusCode, 200);
        await res.body.dump();
      };
      await call();
      // The token request proved the sidecar's DPoP key (RFC 9449 5); the key is part of the cache key.
      const exchange = sts.received.find((r) => r.form.get('audience') === 'aud-dpop-keep')!;
      assert.ok(decodeProtectedHeader(String(exchange.headers['dpop'])).jwk, 'the token request carries a DPoP proof');
      await writeFile(file, dpopRoute(`\n  - { name: extra, host: extra.internal, audience: aud-dpop-extra, upstream: "${upstream.url}" }`));
      const result = await sidecar.reload();
      assert.equal(result.ok, true, JSON.stringify(result.problems));
      assert.deepEqual(result.carriedRoutes, ['orders']);
      // A new key would be a new cache key, hence another exchange.
      await call();
      assert.equal(exchangesFor(sts, 'aud-dpop-keep'), 1);
    } finally {
      await sidecar.close(0);
    }
  });

  it('reloads asked faster than they run are bounded: one read of the file is queued, not one per ask', async () => {
    const file = join(dir, 'burst.yaml');
    await writeFile(file, configText(sts, upstream, [{ name: 'orders', audience: 'aud-burst' }]));
    const sidecar = await start(file, []);
    try {
      const results = await Promise.all(Array.from({ length: 50 }, () => sidecar.reload()));
      assert.ok(results.every((r) => r.ok));
      assert.equal(sidecar.generation, 2);
      const metrics = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
      assert.match(metrics, /sts_sidecar_config_reloads_total\{result="success"\} 1/);
    } finally {
      await sidecar.close(0);
    }
  });

  it('a kubelet-style ConfigMap swap (..data symlink) is picked up without a signal', async () => {
    const mount = join(dir, 'configmap');
    await mkdir(join(mount, '..2026_12_03_01'), { recursive: true });
    const orders = { name: 'orders', audience: 'aud-swap' };
    await writeFile(join(mount, '..2026_12_03_01', 'sidecar.yaml'), configText(sts, upstream, [orders]));
    await symlink('..2026_12_03_01', join(mount, '..data'));
    await symlink('..data/sidecar.yaml', join(mount, 'sidecar.yaml'));
    const sidecar = await start(join(mount, 'sidecar.yaml'), [], true);
    try {
      // The kubelet's AtomicWriter: a new timestamped directory, a `..data_tmp` link to it,
      // renamed over `..data` in one step.
      await mkdir(join(mount, '..2026_12_03_02'));
      await writeFile(join(mount, '..2026_12_03_02', 'sidecar.yaml'), configText(sts, upstream, [orders, { name: 'late', audience: 'aud-late' }]));
      await symlink('..2026_12_03_02', join(mount, '..data_tmp'));
      await rename(join(mount, '..data_tmp'), join(mount, '..data'));
      await eventually(() => sidecar.generation === 2, { what: 'the swap to be reloaded', timeoutMs: 10_000 });
      const res = await request(`${sidecar.proxyUrl}/x`, { headers: { host: 'late.internal' } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal(exchangesFor(sts, 'aud-swap'), 1);
    } finally {
      await sidecar.close(0);
    }
  });
});

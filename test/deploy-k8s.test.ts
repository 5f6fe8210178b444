/**
 * k8s/: what `kubectl apply -k k8s/` (and k8s/legacy-app/) would create, checked without
 * a cluster: Kubernetes schemas, no unknown fields, and the cross-references a typo
 * would break (mounts and volumes, probes and the admin listener, the config and the
 * files the volumes provide, Service, ServiceMonitor and scrape annotations).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { parseConfigText } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import {
  find,
  isObj,
  kustomize,
  metadataOf,
  podContainers,
  podSpecOf,
  podTemplateOf,
  readYamlDocuments,
  relativeToRepo,
  repoPath,
  schemaErrors,
  strictFieldErrors,
  yamlFilesUnder,
  type KustomizeResult,
  type Manifest,
  type Obj,
} from './helpers/manifests.js';

const run = promisify(execFile);
const BIN = repoPath('dist', 'src', 'cli', 'main.js');
const SIDECAR = 'sts-sidecar';

let base: KustomizeResult;
let legacy: KustomizeResult;
let configText: string;
let config: Config;

function only(objects: readonly Manifest[], kind: string, name?: string): Obj {
  const found = find(objects, kind, name);
  assert.equal(found.length, 1, `expected exactly one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!.object;
}

/** The workloads whose pods carry the sidecar, from both variants. */
function workloads(): Array<{ label: string; object: Obj }> {
  return [
    ...[...base.objects, ...legacy.objects]
      .filter((m) => podSpecOf(m.object) !== undefined)
      .map((m, i) => ({ label: `${String(m.object['kind'])}/${String(metadataOf(m.object)['name'])}#${i}`, object: m.object })),
  ];
}

function sidecarOf(pod: Obj): Obj {
  const init = (podSpecOf(pod)?.['initContainers'] as Obj[] | undefined) ?? [];
  const sidecar = init.find((c) => c['name'] === SIDECAR);
  assert.ok(sidecar, 'no sts-sidecar init container');
  return sidecar;
}

function appContainers(pod: Obj): Obj[] {
  return ((podSpecOf(pod)?.['containers'] as Obj[] | undefined) ?? []).filter(isObj);
}

function volumesOf(pod: Obj): Obj[] {
  return ((podSpecOf(pod)?.['volumes'] as Obj[] | undefined) ?? []).filter(isObj);
}

function mountsOf(container: Obj): Obj[] {
  return ((container['volumeMounts'] as Obj[] | undefined) ?? []).filter(isObj);
}

/** The container port a probe's `port` (a number or a port name) refers to. */
function resolvePort(container: Obj, port: unknown): number | undefined {
  if (typeof port === 'number') return port;
  const ports = ((container['ports'] as Obj[] | undefined) ?? []).filter(isObj);
  const named = ports.find((p) => p['name'] === port);
  return typeof named?.['containerPort'] === 'number' ? named['containerPort'] : undefined;
}

/** Kubernetes quantities as numbers: bytes for memory, cores for CPU. */
function quantity(value: unknown): number {
  const match = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|k|M|G)?$/.exec(String(value));
  assert.ok(match, `not a quantity: ${String(value)}`);
  const units: Record<string, number> = { m: 1e-3, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 };
  return Number(match[1]) * (match[2] ? units[match[2]]! : 1);
}

/** Where a file named in the config comes from: the sidecar's mount and the pod volume behind it. */
function volumeProviding(pod: Obj, path: string): { mount: Obj; volume: Obj } {
  const sidecar = sidecarOf(pod);
  const mount = mountsOf(sidecar).find((m) => m['mountPath'] === dirname(path));
  assert.ok(mount, `${path}: no volume is mounted at ${dirname(path)} in the sidecar`);
  const volume = volumesOf(pod).find((v) => v['name'] === mount['name']);
  assert.ok(volume, `${path}: mount ${String(mount['name'])} names no volume`);
  return { mount, volume };
}

describe('k8s manifests', () => {
  before(async () => {
    base = await kustomize(repoPath('k8s'));
    legacy = await kustomize(repoPath('k8s', 'legacy-app'));
    const configMap = only(base.objects, 'ConfigMap', 'sts-sidecar-config');
    configText = String((configMap['data'] as Obj)['config.yaml']);
    config = parseConfigText(configText, 'k8s ConfigMap sts-sidecar-config');
  });

  it('the kustomizations use every file under k8s/ and name no missing one', async () => {
    const onDisk = await yamlFilesUnder(repoPath('k8s'));
    const used = new Set([...base.filesRead, ...legacy.filesRead]);
    assert.deepEqual(onDisk.map(relativeToRepo), [...used].sort().map(relativeToRepo));
    assert.deepEqual(
      find(base.objects, 'Deployment').length + find(base.objects, 'Job').length,
      2,
      'the base has the Deployment and the Job example',
    );
  });

  it('this test\'s kustomize renders what `kubectl kustomize` renders', async (t) => {
    const kubectl = await run('kubectl', ['version', '--client']).then(
      () => true,
      () => false,
    );
    if (!kubectl) return t.skip('kubectl is not installed here');
    for (const [dir, ours] of [
      ['k8s', base],
      ['k8s/legacy-app', legacy],
    ] as const) {
      const { stdout } = await run('kubectl', ['kustomize', repoPath(dir)]);
      const file = join(await mkdtemp(join(tmpdir(), 'kustomize-')), 'out.yaml');
      await writeFile(file, stdout);
      const theirs = await readYamlDocuments(file);
      await rm(dirname(file), { recursive: true, force: true });
      const key = (o: Obj) => `${String(o['kind'])}/${String(metadataOf(o)['name'])}`;
      const sorted = (list: Obj[]) => [...list].sort((a, b) => key(a).localeCompare(key(b)));
      assert.deepEqual(sorted(ours.objects.map((m) => m.object)), sorted(theirs), `${dir}: renders differ`);
    }
  });

  it('every object validates against the Kubernetes (and Prometheus Operator) schemas', async () => {
    const all = [...base.objects, ...legacy.objects];
    assert.deepEqual(
      new Set(all.map((m) => `${String(m.object['apiVersion'])} ${String(m.object['kind'])}`)),
      new Set(['v1 ServiceAccount', 'v1 ConfigMap', 'apps/v1 Deployment', 'batch/v1 Job', 'v1 Service', 'monitoring.coreos.com/v1 ServiceMonitor']),
    );
    for (const m of all) {
      assert.equal(await schemaErrors(m.object), undefined, `${relativeToRepo(m.file)} ${String(m.object['kind'])}`);
    }
  });

  it('no object has a field the API does not know (strict field validation)', () => {
    assert.deepEqual(strictFieldErrors([...base.objects, ...legacy.objects]), []);
  });

  it('both checks catch a broken manifest (so the passes above mean something)', async () => {
    const deployment = structuredClone(only(base.objects, 'Deployment', 'orders-client'));
    const sidecar = sidecarOf(deployment);
    sidecar['restartpolicy'] = sidecar['restartPolicy']; // the API would reject this spelling
    delete sidecar['restartPolicy'];
    assert.match(strictFieldErrors([{ file: repoPath('k8s', 'broken.yaml'), object: deployment }]).join('\n'), /restartpolicy/);
    (sidecar['ports'] as Obj[])[0]!['containerPort'] = 'fifteen-thousand';
    assert.match(String(await schemaErrors(deployment)), /containerPort must be integer/);
  });

  it('runs sts-sidecar as a native sidecar (init container, restartPolicy Always) in every pod', () => {
    for (const { label, object } of workloads()) {
      const sidecar = sidecarOf(object);
      assert.equal(sidecar['restartPolicy'], 'Always', label);
      assert.deepEqual(sidecar['args'], ['run', '--config', '/etc/sts-sidecar/config.yaml'], label);
      assert.ok(appContainers(object).length >= 1, `${label}: no app container`);
      assert.ok(!appContainers(object).some((c) => c['name'] === SIDECAR), `${label}: the sidecar is a regular container too`);
    }
    const job = only(base.objects, 'Job');
    assert.ok(['Never', 'OnFailure'].includes(String(podSpecOf(job)!['restartPolicy'])), 'a Job pod restarts Never or OnFailure');
  });

  it('every volumeMount names a volume of its pod, and no mount sits inside another', () => {
    for (const { label, object } of workloads()) {
      const names = new Set(volumesOf(object).map((v) => v['name']));
      for (const container of podContainers(object)) {
        const mounts = mountsOf(container);
        for (const m of mounts) assert.ok(names.has(m['name']), `${label} ${String(container['name'])}: mount ${String(m['name'])} names no volume`);
        // A mount point inside a read-only configMap/secret/projected mount cannot be created.
        for (const a of mounts) {
          for (const b of mounts) {
            if (a === b) continue;
            assert.ok(!String(b['mountPath']).startsWith(`${String(a['mountPath'])}/`), `${label}: ${String(b['mountPath'])} is inside ${String(a['mountPath'])}`);
          }
        }
      }
    }
  });

  it('probes use the admin listener the config sets up: /healthz for liveness, /readyz for startup and readiness', () => {
    const admin = config.admin.listen;
    assert.notEqual(admin.host, '127.0.0.1', 'the kubelet probes the pod IP: admin must not listen on loopback only');
    assert.ok(['0.0.0.0', '::'].includes(admin.host), `admin.listen host ${admin.host}`);
    assert.equal(config.proxy.listen.host, '127.0.0.1', 'the proxy is for the pod only');
    for (const r of config.routes) if (r.listen) assert.equal(r.listen.host, '127.0.0.1', `route ${r.name} listens on loopback`);
    for (const { label, object } of workloads()) {
      const sidecar = sidecarOf(object);
      const expected = { livenessProbe: '/healthz', readinessProbe: '/readyz', startupProbe: '/readyz' } as const;
      for (const [probe, path] of Object.entries(expected)) {
        const get = (sidecar[probe] as Obj | undefined)?.['httpGet'] as Obj | undefined;
        assert.ok(get, `${label}: no ${probe}.httpGet`);
        assert.equal(get['path'], path, `${label} ${probe}`);
        assert.equal(resolvePort(sidecar, get['port']), admin.port, `${label} ${probe} port`);
      }
    }
  });

  it('the ConfigMap\'s config passes `sts-sidecar check-config`, and a broken one does not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'k8s-config-'));
    after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'config.yaml');
    await writeFile(file, configText);
    const ok = await run(process.execPath, [BIN, 'check-config', file]);
    assert.match(ok.stdout, /valid \(1 route: orders\)/);
    await writeFile(file, `${configText}\nadmni: { listen: 0.0.0.0:15000 }\n`);
    const bad = await run(process.execPath, [BIN, 'check-config', file]).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /admni: unknown key/);
  });

  it('every file the config names is where a volume of the pod puts it', () => {
    for (const { label, object } of workloads()) {
      const sidecar = sidecarOf(object);
      const args = sidecar['args'] as string[];
      const configPath = args[args.indexOf('--config') + 1]!;
      const cm = volumeProviding(object, configPath).volume['configMap'] as Obj | undefined;
      assert.equal(cm?.['name'], 'sts-sidecar-config', `${label}: the config comes from the ConfigMap`);
      assert.ok(cm['items'] === undefined, `${label}: the ConfigMap volume maps keys to file names`);
      assert.ok(Object.keys((only(base.objects, 'ConfigMap')['data'] as Obj)).includes(basename(configPath)), `${label}: no key ${basename(configPath)}`);

      const tokenFile = config.subjectToken.file;
      assert.ok(tokenFile, 'the config reads the subject token from a file');
      const token = volumeProviding(object, tokenFile).volume['projected'] as Obj | undefined;
      const sat = ((token?.['sources'] as Obj[] | undefined) ?? []).map((s) => s['serviceAccountToken']).find(isObj);
      assert.ok(sat, `${label}: ${tokenFile} is not from a projected serviceAccountToken`);
      assert.equal(sat['path'], basename(tokenFile), `${label}: the projected token's path`);
      assert.equal(sat['audience'], new URL(config.sts.url).origin, `${label}: the token's audience is the STS`);
      assert.ok(typeof sat['expirationSeconds'] === 'number' && sat['expirationSeconds'] >= 600, `${label}: expirationSeconds (API minimum 600)`);

      assert.ok(config.identity, 'the config names the workload certificate');
      for (const file of [config.identity.cert, config.identity.key, config.identity.ca!]) {
        const secret = volumeProviding(object, file).volume['secret'] as Obj | undefined;
        assert.ok(secret?.['secretName'], `${label}: ${file} is not from a Secret`);
        // The keys of a kubernetes.io/tls Secret as cert-manager writes it (no items: key = file name).
        assert.equal(secret['items'], undefined);
        assert.ok(['tls.crt', 'tls.key', 'ca.crt'].includes(basename(file)), `${label}: ${file} is not a key cert-manager writes`);
      }
      // Neither credential is visible to the app.
      for (const app of appContainers(object)) {
        for (const m of mountsOf(app)) assert.ok(!['sts-token', 'workload-identity'].includes(String(m['name'])), `${label}: app mounts ${String(m['name'])}`);
      }
      assert.equal(podSpecOf(object)!['automountServiceAccountToken'], false, `${label}: no Kubernetes API token in the pod`);
    }
  });

  it('hardens every container: non-root, read-only root, no capabilities, RuntimeDefault seccomp, no privilege escalation', () => {
    for (const { label, object } of workloads()) {
      const pod = podSpecOf(object)!;
      const podContext = (pod['securityContext'] as Obj | undefined) ?? {};
      for (const c of podContainers(object)) {
        const sc = (c['securityContext'] as Obj | undefined) ?? {};
        const what = `${label} ${String(c['name'])}`;
        assert.equal(sc['runAsNonRoot'] ?? podContext['runAsNonRoot'], true, `${what} runAsNonRoot`);
        assert.equal(sc['readOnlyRootFilesystem'], true, `${what} readOnlyRootFilesystem`);
        assert.equal(sc['allowPrivilegeEscalation'], false, `${what} allowPrivilegeEscalation`);
        assert.deepEqual((sc['capabilities'] as Obj | undefined)?.['drop'], ['ALL'], `${what} capabilities.drop`);
        const seccomp = (sc['seccompProfile'] ?? podContext['seccompProfile']) as Obj | undefined;
        assert.equal(seccomp?.['type'], 'RuntimeDefault', `${what} seccompProfile`);
      }
      const sidecar = sidecarOf(object);
      const uid = (sidecar['securityContext'] as Obj)['runAsUser'] ?? podContext['runAsUser'];
      assert.ok(typeof uid === 'number' && uid > 0, `${label}: the sidecar's uid`);
      // The only writable place a read-only root leaves: an emptyDir at /tmp (os.tmpdir()).
      const tmp = mountsOf(sidecar).find((m) => m['mountPath'] === '/tmp');
      assert.ok(tmp && isObj(volumesOf(object).find((v) => v['name'] === tmp['name'])?.['emptyDir']), `${label}: no emptyDir at /tmp`);
    }
  });

  it('sizes the sidecar\'s resources from the benchmark (RSS 108 MB under load)', () => {
    for (const { label, object } of workloads()) {
      const resources = sidecarOf(object)['resources'] as { requests?: Obj; limits?: Obj } | undefined;
      const { requests, limits } = resources ?? {};
      assert.ok(requests && limits, `${label}: requests and limits`);
      assert.ok(quantity(requests['memory']) >= 108e6, `${label}: the memory request covers the RSS measured under load`);
      assert.ok(quantity(limits['memory']) > quantity(requests['memory']), `${label}: headroom above the request`);
      assert.ok(quantity(requests['cpu']) > 0 && quantity(limits['cpu']) >= quantity(requests['cpu']), `${label}: cpu`);
    }
  });

  it('the app reaches the sidecar where the config listens', () => {
    const route = config.routes.find((r) => r.listen)!;
    for (const object of [only(base.objects, 'Deployment'), only(base.objects, 'Job')]) {
      const command = appContainers(object).flatMap((c) => [...((c['command'] as string[]) ?? []), ...((c['args'] as string[]) ?? [])]).join(' ');
      assert.match(command, new RegExp(`http://127\\.0\\.0\\.1:${route.listen!.port}/`));
    }
  });

  it('the legacy variant points HTTP_PROXY/HTTPS_PROXY (both cases) at the proxy listener and keeps loopback direct', () => {
    const deployment = only(legacy.objects, 'Deployment');
    const [app] = appContainers(deployment);
    const env = new Map(((app!['env'] as Obj[] | undefined) ?? []).map((e) => [String(e['name']), String(e['value'])]));
    const proxyUrl = `http://${config.proxy.listen.host}:${config.proxy.listen.port}`;
    for (const name of ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy']) assert.equal(env.get(name), proxyUrl, name);
    for (const name of ['NO_PROXY', 'no_proxy']) {
      const list = (env.get(name) ?? '').split(',');
      for (const direct of ['localhost', '127.0.0.1']) assert.ok(list.includes(direct), `${name} has ${direct}`);
    }
    // It calls a host a route serves, by name, as the unchanged app would.
    const called = /http:\/\/([a-z0-9.-]+)\//.exec(((app!['args'] as string[]) ?? []).join(' '))?.[1];
    assert.ok(config.routes.some((r) => r.host === called), `the legacy app calls ${String(called)}, which no route names`);
    // The patch changed only the app: the sidecar is the base's.
    assert.deepEqual(sidecarOf(deployment), sidecarOf(only(base.objects, 'Deployment')));
  });

  it('the metrics Service, the ServiceMonitor and the scrape annotations all point at /metrics on the admin port', () => {
    const deployment = only(base.objects, 'Deployment');
    const template = podTemplateOf(deployment)!;
    const podLabels = metadataOf(template)['labels'] as Obj;
    const service = only(base.objects, 'Service');
    const spec = service['spec'] as Obj;
    for (const [k, v] of Object.entries(spec['selector'] as Obj)) assert.equal(podLabels[k], v, `Service selector ${k}`);
    const jobLabels = metadataOf(podTemplateOf(only(base.objects, 'Job'))!)['labels'] as Obj;
    assert.ok(
      Object.entries(spec['selector'] as Obj).some(([k, v]) => jobLabels[k] !== v),
      'the Service does not select the Job\'s pods',
    );
    const port = (spec['ports'] as Obj[])[0]!;
    assert.equal(resolvePort(sidecarOf(deployment), port['targetPort']), config.admin.listen.port);

    const monitor = only(base.objects, 'ServiceMonitor')['spec'] as Obj;
    const serviceLabels = metadataOf(service)['labels'] as Obj;
    for (const [k, v] of Object.entries((monitor['selector'] as Obj)['matchLabels'] as Obj)) assert.equal(serviceLabels[k], v, `ServiceMonitor selects ${k}`);
    const endpoints = monitor['endpoints'] as Obj[];
    assert.ok(endpoints.length > 0);
    for (const e of endpoints) {
      assert.equal(e['port'], port['name'], 'the ServiceMonitor names the Service port');
      assert.equal(e['path'], '/metrics');
    }

    const annotations = metadataOf(template)['annotations'] as Obj;
    assert.equal(annotations['prometheus.io/scrape'], 'true');
    assert.equal(annotations['prometheus.io/port'], String(config.admin.listen.port));
    assert.equal(annotations['prometheus.io/path'], '/metrics');
  });

  it('ships no credentials: no Secret object, no token or key material in any manifest', () => {
    const all = [...base.objects, ...legacy.objects];
    assert.equal(find(all, 'Secret').length, 0);
    const text = JSON.stringify(all.map((m) => m.object));
    assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+\./, 'a JWT');
    assert.doesNotMatch(text, /-----BEGIN/, 'PEM material');
  });
});

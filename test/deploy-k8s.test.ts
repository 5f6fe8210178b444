/**
 * k8s/: what `kubectl apply -k k8s/` (and k8s/legacy-app/, k8s/injector/) would create,
 * checked without a cluster: Kubernetes schemas, no unknown fields, and the cross-references
 * a typo would break (mounts and volumes, probes and the admin listener, the config and the
 * files the volumes provide, Service and ServiceMonitor, the webhook and its certificate).
 * The legacy app's sidecar is the injector's: its Deployment is checked as the injector
 * mutates it (src/inject/), with the webhook config k8s/injector/ ships.
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
import { parseWebhookConfig, type WebhookConfig } from '../src/inject/webhook-config.js';
import { injectWorkload } from '../src/inject/workload.js';
import { parse as parseYaml } from 'yaml';
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
let injector: KustomizeResult;
let webhookConfig: WebhookConfig;
/** k8s/legacy-app/'s Deployment as the injector leaves it. */
let legacyInjected: Obj;
let configText: string;
let config: Config;

function only(objects: readonly Manifest[], kind: string, name?: string): Obj {
  const found = find(objects, kind, name);
  assert.equal(found.length, 1, `expected exactly one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!.object;
}

/** The workloads whose pods carry the sidecar: the base's, and the legacy app's once injected. */
function workloads(): Array<{ label: string; object: Obj }> {
  return [
    ...base.objects
      .filter((m) => podSpecOf(m.object) !== undefined)
      .map((m, i) => ({ label: `${String(m.object['kind'])}/${String(metadataOf(m.object)['name'])}#${i}`, object: m.object })),
    { label: 'Deployment/orders-legacy-client (injected)', object: legacyInjected },
  ];
}

/** cert-manager's kinds: kubernetes-models has no schema for them (checked by hand below). */
const isCertManager = (m: Manifest): boolean => String(m.object['apiVersion']).startsWith('cert-manager.io/');
const checkable = (objects: readonly Manifest[]): Manifest[] => objects.filter((m) => !isCertManager(m));

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
    injector = await kustomize(repoPath('k8s', 'injector'));
    const webhookMap = only(injector.objects, 'ConfigMap', 'sts-sidecar-injector');
    webhookConfig = parseWebhookConfig(parseYaml(String((webhookMap['data'] as Obj)['webhook.yaml'])));
    legacyInjected = structuredClone(only(legacy.objects, 'Deployment', 'orders-legacy-client'));
    const injected = injectWorkload(legacyInjected, webhookConfig);
    assert.equal(injected.kind, 'patch', `the injector did not mutate the legacy app: ${JSON.stringify(injected)}`);
    const configMap = only(base.objects, 'ConfigMap', 'sts-sidecar-config');
    configText = String((configMap['data'] as Obj)['config.yaml']);
    config = parseConfigText(configText, 'k8s ConfigMap sts-sidecar-config');
  });

  it('the kustomizations use every file under k8s/ and name no missing one', async () => {
    const onDisk = await yamlFilesUnder(repoPath('k8s'));
    const used = new Set([...base.filesRead, ...legacy.filesRead, ...injector.filesRead]);
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
      ['k8s/injector', injector],
    ] as const) {
      const { stdout } = await run('kubectl', ['kustomize', repoPath(dir)]);
      const file = join(await mkdtemp(join(tmpdir(), 'kustomize-')), 'out.yaml');
      await writeFile(file, stdout);
      const theirs = await readYamlDocuments(file);
      await rm(dirname(file), { recursive: true, force: true });
      const key = (o: Obj) => `${String(o['kind'])}/${String(metadataOf(o)['namespace'] ?? '')}/${String(metadataOf(o)['name'])}`;
      const sorted = (list: Obj[]) => [...list].sort((a, b) => key(a).localeCompare(key(b)));
      assert.deepEqual(sorted(ours.objects.map((m) => m.object)), sorted(theirs), `${dir}: renders differ`);
    }
  });

  it('every object validates against the Kubernetes (and Prometheus Operator) schemas', async () => {
    const all = [...base.objects, ...legacy.objects, ...injector.objects, { file: repoPath('k8s', 'legacy-app', 'deployment.yaml'), object: legacyInjected }];
    assert.deepEqual(
      new Set(all.map((m) => `${String(m.object['apiVersion'])} ${String(m.object['kind'])}`)),
      new Set([
        'v1 Namespace',
        'v1 ServiceAccount',
        'v1 ConfigMap',
        'apps/v1 Deployment',
        'batch/v1 Job',
        'v1 Service',
        'monitoring.coreos.com/v1 ServiceMonitor',
        'policy/v1 PodDisruptionBudget',
        'admissionregistration.k8s.io/v1 MutatingWebhookConfiguration',
        'cert-manager.io/v1 Issuer',
        'cert-manager.io/v1 Certificate',
      ]),
    );
    for (const m of checkable(all)) {
      assert.equal(await schemaErrors(m.object), undefined, `${relativeToRepo(m.file)} ${String(m.object['kind'])}`);
    }
  });

  it('no object has a field the API does not know (strict field validation)', () => {
    assert.deepEqual(
      strictFieldErrors(checkable([...base.objects, ...legacy.objects, ...injector.objects, { file: repoPath('k8s', 'legacy-app', 'deployment.yaml'), object: legacyInjected }])),
      [],
    );
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
      const credentialVolumes = [tokenFile, config.identity.key].map((f) => String(volumeProviding(object, f).volume['name']));
      for (const app of appContainers(object)) {
        for (const m of mountsOf(app)) assert.ok(!credentialVolumes.includes(String(m['name'])), `${label}: app mounts ${String(m['name'])}`);
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

  it('sizes the sidecar\'s resources from the benchmark (RSS 95.5 MB under load, issue 15)', () => {
    for (const { label, object } of workloads()) {
      const resources = sidecarOf(object)['resources'] as { requests?: Obj; limits?: Obj } | undefined;
      const { requests, limits } = resources ?? {};
      assert.ok(requests && limits, `${label}: requests and limits`);
      assert.ok(quantity(requests['memory']) >= 95.5e6, `${label}: the memory request covers the RSS measured under load`);
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

  it('the legacy app, injected, points HTTP_PROXY/HTTPS_PROXY (both cases) at the proxy listener and keeps loopback direct', () => {
    const raw = only(legacy.objects, 'Deployment');
    assert.equal(podSpecOf(raw)!['initContainers'], undefined, 'the legacy app is written without a sidecar: the injector adds it');
    const [app] = appContainers(legacyInjected);
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
    // The injected sidecar runs what the hand-written one runs, from the same ConfigMap.
    const [handWritten, injected] = [sidecarOf(only(base.objects, 'Deployment')), sidecarOf(legacyInjected)];
    for (const key of ['args', 'restartPolicy', 'securityContext']) assert.deepEqual(injected[key], handWritten[key], key);
    assert.equal(String(injected['image']).split(':')[0], String(handWritten['image']).split(':')[0], 'the same image');
  });

  it('composes: k8s/, k8s/legacy-app/ and k8s/injector/ create no object twice', () => {
    const key = (m: Manifest) => `${String(m.object['kind'])} ${String(metadataOf(m.object)['namespace'] ?? 'default')}/${String(metadataOf(m.object)['name'])}`;
    const seen = new Map<string, string>();
    for (const [dir, result] of [
      ['k8s', base],
      ['k8s/legacy-app', legacy],
      ['k8s/injector', injector],
    ] as const) {
      for (const m of result.objects) {
        assert.ok(!seen.has(key(m)), `${key(m)} is created by both ${String(seen.get(key(m)))} and ${dir}: applying one replaces the other`);
        seen.set(key(m), dir);
      }
    }
    // Two Deployments must not select each other's pods either.
    const selectors = [...base.objects, ...legacy.objects].filter((m) => m.object['kind'] === 'Deployment');
    for (const a of selectors) {
      for (const b of selectors) {
        if (a === b) continue;
        const sel = ((a.object['spec'] as Obj)['selector'] as Obj)['matchLabels'] as Obj;
        const labels = metadataOf(podTemplateOf(b.object)!)['labels'] as Obj;
        assert.ok(Object.entries(sel).some(([k, v]) => labels[k] !== v), `${key(a)} selects the pods of ${key(b)}`);
      }
    }
  });

  it('metrics one way: every sidecar\'s admin port is behind a Service the ServiceMonitor selects, and no pod has prometheus.io annotations', () => {
    const monitor = only(base.objects, 'ServiceMonitor')['spec'] as Obj;
    const endpoints = monitor['endpoints'] as Obj[];
    assert.ok(endpoints.length > 0);
    for (const e of endpoints) assert.equal(e['path'], '/metrics');
    const services = [...base.objects, ...legacy.objects].filter((m) => m.object['kind'] === 'Service').map((m) => m.object);
    const selected = services.filter((svc) =>
      Object.entries((monitor['selector'] as Obj)['matchLabels'] as Obj).every(([k, v]) => (metadataOf(svc)['labels'] as Obj)[k] === v),
    );
    for (const { label, object } of workloads()) {
      const template = podTemplateOf(object)!;
      const podLabels = metadataOf(template)['labels'] as Obj;
      const annotations = (metadataOf(template)['annotations'] as Obj | undefined) ?? {};
      assert.deepEqual(Object.keys(annotations).filter((k) => k.startsWith('prometheus.io/')), [], `${label}: scrape annotations (the ServiceMonitor is the one way)`);
      const services = selected.filter((svc) => Object.entries((svc['spec'] as Obj)['selector'] as Obj).every(([k, v]) => podLabels[k] === v));
      if (object['kind'] === 'Job') {
        assert.equal(services.length, 0, `${label}: a Job's short-lived pod is not scraped`);
        continue;
      }
      assert.equal(services.length, 1, `${label}: one metrics Service selects its pods`);
      const port = ((services[0]!['spec'] as Obj)['ports'] as Obj[])[0]!;
      for (const e of endpoints) assert.equal(e['port'], port['name'], 'the ServiceMonitor names the Service port');
      assert.equal(resolvePort(sidecarOf(object), port['targetPort']), config.admin.listen.port, `${label}: the Service reaches the admin listener`);
    }
  });

  it('the injector: webhook registration, Service, serving certificate and Deployment line up', () => {
    const webhooks = only(injector.objects, 'MutatingWebhookConfiguration');
    const [hook, ...more] = webhooks['webhooks'] as Obj[];
    assert.ok(hook && more.length === 0, 'one webhook');
    assert.equal(hook['sideEffects'], 'None');
    assert.equal(hook['failurePolicy'], 'Fail');
    assert.equal(hook['reinvocationPolicy'], 'IfNeeded');
    assert.ok(Number(hook['timeoutSeconds']) <= 5, 'a short timeout');
    assert.deepEqual(hook['admissionReviewVersions'], ['v1']);
    assert.deepEqual(hook['rules'], [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
    assert.ok(isObj(hook['objectSelector']), 'an objectSelector');
    const ref = (hook['clientConfig'] as Obj)['service'] as Obj;
    assert.equal(ref['path'], '/mutate');
    const service = only(injector.objects, 'Service', String(ref['name']));
    assert.equal(metadataOf(service)['namespace'], ref['namespace']);
    const servicePort = ((service['spec'] as Obj)['ports'] as Obj[]).find((p) => p['port'] === ref['port']);
    assert.ok(servicePort, 'the webhook names a port of the Service');
    // The injector's namespace never goes through the injector (failurePolicy Fail would deadlock it).
    const excluded = (((hook['namespaceSelector'] as Obj)['matchExpressions'] as Obj[]).find((e) => e['key'] === 'kubernetes.io/metadata.name')?.['values'] ?? []) as string[];
    for (const ns of ['kube-system', String(ref['namespace'])]) assert.ok(excluded.includes(ns), `namespaceSelector leaves out ${ns}`);
    for (const ns of ['kube-system', String(ref['namespace'])]) assert.ok(['kube-system', ...webhookConfig.excludedNamespaces].includes(ns), `webhook.yaml excludes ${ns}`);

    // TLS: cert-manager's CA injector reads the serving Certificate the annotation names.
    const [certNs, certName] = String(metadataOf(webhooks)['annotations'] && (metadataOf(webhooks)['annotations'] as Obj)['cert-manager.io/inject-ca-from']).split('/');
    const serving = only(injector.objects, 'Certificate', certName);
    assert.equal(metadataOf(serving)['namespace'], certNs);
    const servingSpec = serving['spec'] as Obj;
    assert.ok((servingSpec['dnsNames'] as string[]).includes(`${String(ref['name'])}.${String(ref['namespace'])}.svc`), 'the certificate names the Service');
    const issuer = only(injector.objects, 'Issuer', String((servingSpec['issuerRef'] as Obj)['name']));
    const caCert = only(injector.objects, 'Certificate', String(((issuer['spec'] as Obj)['ca'] as Obj)['secretName']));
    assert.equal((caCert['spec'] as Obj)['isCA'], true);
    const certKeys: Record<string, string[]> = {
      Issuer: ['selfSigned', 'ca'],
      Certificate: ['secretName', 'commonName', 'dnsNames', 'duration', 'renewBefore', 'usages', 'privateKey', 'issuerRef', 'isCA'],
    };
    for (const m of injector.objects.filter(isCertManager)) {
      const extra = Object.keys(m.object['spec'] as Obj).filter((k) => !certKeys[String(m.object['kind'])]!.includes(k));
      assert.deepEqual(extra, [], `${String(m.object['kind'])} ${String(metadataOf(m.object)['name'])}: fields cert-manager v1 does not have`);
    }

    // The Deployment serves that Service with that certificate's Secret and the ConfigMap's webhook.yaml.
    const deployment = only(injector.objects, 'Deployment');
    const pod = podSpecOf(deployment)!;
    assert.equal(metadataOf(deployment)['namespace'], ref['namespace']);
    const [container] = pod['containers'] as Obj[];
    const args = container!['args'] as string[];
    const flag = (name: string) => args[args.indexOf(name) + 1]!;
    assert.equal(args[0], 'inject');
    assert.equal(Number(flag('--listen').split(':').pop()), resolvePort(container!, servicePort['targetPort']));
    const volumeAt = (path: string) => {
      const mount = mountsOf(container!).find((m) => m['mountPath'] === dirname(path));
      assert.ok(mount, `nothing mounted at ${dirname(path)}`);
      return volumesOf(deployment).find((v) => v['name'] === mount['name'])!;
    };
    for (const f of ['--tls-cert', '--tls-key']) assert.equal((volumeAt(flag(f))['secret'] as Obj)['secretName'], servingSpec['secretName'], f);
    assert.equal((volumeAt(flag('--config'))['configMap'] as Obj)['name'], 'sts-sidecar-injector');
    for (const probe of ['readinessProbe', 'livenessProbe']) {
      const get = (container![probe] as Obj)['httpGet'] as Obj;
      assert.deepEqual([get['path'], get['scheme']], ['/healthz', 'HTTPS'], probe);
    }
    const sc = container!['securityContext'] as Obj;
    assert.deepEqual(
      [sc['runAsNonRoot'], sc['readOnlyRootFilesystem'], sc['allowPrivilegeEscalation'], (sc['capabilities'] as Obj)['drop'], (sc['seccompProfile'] as Obj)['type']],
      [true, true, false, ['ALL'], 'RuntimeDefault'],
      'the injector is hardened like the sidecar',
    );
    // No RBAC: the webhook reads nothing from the API, so its pod holds no API token.
    assert.equal(injector.objects.filter((m) => /Role/.test(String(m.object['kind']))).length, 0);
    assert.equal(pod['automountServiceAccountToken'], false);
    assert.equal(find(injector.objects, 'PodDisruptionBudget').length, 1, 'failurePolicy Fail wants a disruption budget');
  });

  it('ships no credentials: no Secret object, no token or key material in any manifest', () => {
    const all = [...base.objects, ...legacy.objects, ...injector.objects];
    assert.equal(find(all, 'Secret').length, 0);
    const text = JSON.stringify(all.map((m) => m.object));
    assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+\./, 'a JWT');
    assert.doesNotMatch(text, /-----BEGIN/, 'PEM material');
  });
});

/**
 * The injector's decisions (issue 14), without a server: AdmissionReview requests shaped as
 * the API server sends them, answers decoded, patches applied with fast-json-patch (RFC 6902)
 * and the resulting pods validated with kubernetes-models (schema and strict fields).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText } from '../src/config/load.js';
import { reviewPod, parseAdmissionReview } from '../src/inject/admission.js';
import { GENERATED_CONFIG_ANNOTATION } from '../src/inject/annotations.js';
import { parseWebhookConfig, type WebhookConfig } from '../src/inject/webhook-config.js';
import { admissionReview, applyJsonPatch, decodeResponse, fixturePod, type DecodedResponse } from './helpers/admission.js';
import { find, kustomize, podTemplateOf, repoPath, schemaErrors, strictFieldErrors, type Obj } from './helpers/manifests.js';

const CONFIG = parseWebhookConfig({ image: 'registry.example.com/sts-sidecar:0.1.0', excludedNamespaces: ['legacy'] });

function review(pod: Obj, options: Parameters<typeof admissionReview>[1] = {}, config: WebhookConfig = CONFIG): DecodedResponse {
  const request = admissionReview(pod, options);
  const decoded = decodeResponse(reviewPod(parseAdmissionReview(request), config).response);
  assert.equal(decoded.uid, (request['request'] as Obj)['uid'], 'response.uid echoes request.uid');
  return decoded;
}

function mutated(pod: Obj, config: WebhookConfig = CONFIG): Obj {
  const answer = review(pod, {}, config);
  assert.equal(answer.allowed, true, JSON.stringify(answer.status));
  assert.equal(answer.patchType, 'JSONPatch');
  assert.ok(answer.patch && answer.patch.length > 0, 'a patch');
  return applyJsonPatch(pod, answer.patch);
}

async function assertValidPod(pod: Obj, label: string): Promise<void> {
  assert.equal(await schemaErrors(pod), undefined, `${label}: schema`);
  // The API server sends `creationTimestamp: null` (Go's zero metav1.Time) before it sets one;
  // the TypeScript interfaces do not model that null, so only the strict-field check drops it.
  const typed = structuredClone(pod);
  if ((typed['metadata'] as Obj)['creationTimestamp'] === null) delete (typed['metadata'] as Obj)['creationTimestamp'];
  assert.deepEqual(strictFieldErrors([{ file: repoPath('test', 'fixtures', 'inject', `${label}.json`), object: typed }]), [], `${label}: strict fields`);
}

const spec = (pod: Obj) => pod['spec'] as Obj;
const initContainers = (pod: Obj) => (spec(pod)['initContainers'] as Obj[] | undefined) ?? [];
const volumes = (pod: Obj) => (spec(pod)['volumes'] as Obj[] | undefined) ?? [];
const annotationsOf = (pod: Obj) => ((pod['metadata'] as Obj)['annotations'] as Record<string, string> | undefined) ?? {};

function withAnnotations(pod: Obj, annotations: Record<string, string | undefined>): Obj {
  const copy = structuredClone(pod);
  const meta = copy['metadata'] as Obj;
  const merged: Record<string, string> = { ...((meta['annotations'] as Record<string, string>) ?? {}) };
  for (const [k, v] of Object.entries(annotations)) {
    if (v === undefined) delete merged[k];
    else merged[k] = v;
  }
  meta['annotations'] = merged;
  return copy;
}

/** The pod of an example workload, without the sidecar written into it, asking the injector instead. */
function examplePodWithoutSidecar(workload: Obj): Obj {
  const template = structuredClone(podTemplateOf(workload)!);
  const podSpec = template['spec'] as Obj;
  const sidecar = (podSpec['initContainers'] as Obj[]).find((c) => c['name'] === 'sts-sidecar')!;
  const theirs = new Set(((sidecar['volumeMounts'] as Obj[]) ?? []).map((m) => m['name']));
  podSpec['initContainers'] = (podSpec['initContainers'] as Obj[]).filter((c) => c !== sidecar);
  if ((podSpec['initContainers'] as Obj[]).length === 0) delete podSpec['initContainers'];
  podSpec['volumes'] = (podSpec['volumes'] as Obj[]).filter((v) => !theirs.has(v['name']));
  const meta = template['metadata'] as Obj;
  meta['labels'] = { ...(meta['labels'] as Obj), 'sts-sidecar.io/inject': 'true' };
  meta['annotations'] = {
    'sts-sidecar.io/config-map': 'sts-sidecar-config',
    'sts-sidecar.io/identity-secret': 'orders-client-identity',
    'sts-sidecar.io/token-audience': 'https://sts.example.com',
  };
  return { apiVersion: 'v1', kind: 'Pod', metadata: { ...meta, namespace: 'default' }, spec: podSpec };
}

describe('injector: the mutation (AdmissionReview v1, RFC 6902 patch)', () => {
  it('injects a native sidecar with a generated config into a pod as the API server sends it, and the result is a valid Pod', async () => {
    const pod = fixturePod();
    const out = mutated(pod);
    await assertValidPod(out, 'pod-from-replicaset');
    const [sidecar, ...others] = initContainers(out);
    assert.equal(others.length, 0);
    assert.equal(sidecar!['name'], 'sts-sidecar');
    assert.equal(sidecar!['restartPolicy'], 'Always', 'a native sidecar');
    assert.equal(sidecar!['image'], 'registry.example.com/sts-sidecar:0.1.0');
    assert.deepEqual(
      ['startupProbe', 'readinessProbe', 'livenessProbe'].map((p) => ((sidecar![p] as Obj)['httpGet'] as Obj)['path']),
      ['/readyz', '/readyz', '/healthz'],
    );
    assert.deepEqual(sidecar!['resources'], { requests: { cpu: '50m', memory: '96Mi' }, limits: { cpu: '500m', memory: '144Mi' } });
    // The app container is untouched (no proxy-env asked), and so are the API server's own volumes.
    assert.deepEqual(spec(out)['containers'], spec(pod)['containers']);
    assert.ok(volumes(out).some((v) => v['name'] === 'kube-api-access-x7k2p'));
    // The projected token: audience the STS's origin (no token-audience annotation), 1 h by default.
    const token = volumes(out).find((v) => v['name'] === 'sts-sidecar-token')!;
    assert.deepEqual(((token['projected'] as Obj)['sources'] as Obj[])[0], {
      serviceAccountToken: { audience: 'https://sts.example.com', expirationSeconds: 3600, path: 'sts-token' },
    });
    // The config: generated into an annotation, which a downward-API volume turns into the file the sidecar reads.
    const configVolume = volumes(out).find((v) => v['name'] === 'sts-sidecar-config')!;
    const item = ((configVolume['downwardAPI'] as Obj)['items'] as Obj[])[0]!;
    assert.equal((item['fieldRef'] as Obj)['fieldPath'], `metadata.annotations['${GENERATED_CONFIG_ANNOTATION}']`);
    const config = parseConfigText(annotationsOf(out)[GENERATED_CONFIG_ANNOTATION]!, 'generated', {});
    assert.equal(config.sts.url.href, 'https://sts.example.com/token');
    assert.equal(config.subjectToken.file, '/var/run/secrets/tokens/sts-token');
    const [route] = config.routes;
    assert.deepEqual([route!.host, route!.upstream?.href, route!.audience, route!.scope, route!.listen], [
      'orders.internal',
      'https://orders.internal/',
      ['https://orders.internal'],
      'orders.read',
      { host: '127.0.0.1', port: 15002 },
    ]);
    assert.equal(config.admin.listen.port, (((sidecar!['startupProbe'] as Obj)['httpGet'] as Obj)['port']));
  });

  it('takes the annotations over the defaults: token audience and lifetime, ports, resources', async () => {
    const pod = withAnnotations(fixturePod(), {
      'sts-sidecar.io/token-audience': 'sts-audience',
      'sts-sidecar.io/token-expiration-seconds': '7200',
      'sts-sidecar.io/admin-port': '16000',
      'sts-sidecar.io/proxy-port': '16001',
      'sts-sidecar.io/cpu-request': '25m',
      'sts-sidecar.io/memory-request': '150Mi',
      'sts-sidecar.io/memory-limit': '256Mi',
      'sts-sidecar.io/cpu-limit': '1',
      'sts-sidecar.io/identity-secret': 'orders-identity',
    });
    const out = mutated(pod);
    await assertValidPod(out, 'annotated');
    const sidecar = initContainers(out)[0]!;
    assert.deepEqual(sidecar['resources'], { requests: { cpu: '25m', memory: '150Mi' }, limits: { cpu: '1', memory: '256Mi' } });
    assert.equal(((sidecar['ports'] as Obj[])[0]!)['containerPort'], 16000);
    const token = volumes(out).find((v) => v['name'] === 'sts-sidecar-token')!;
    assert.deepEqual(((token['projected'] as Obj)['sources'] as Obj[])[0], { serviceAccountToken: { audience: 'sts-audience', expirationSeconds: 7200, path: 'sts-token' } });
    const config = parseConfigText(annotationsOf(out)[GENERATED_CONFIG_ANNOTATION]!, 'generated', {});
    assert.deepEqual([config.admin.listen.port, config.proxy.listen.port], [16000, 16001]);
    // The workload certificate: the Secret mounted into the sidecar only, and named in the generated config.
    const identity = volumes(out).find((v) => v['name'] === 'sts-sidecar-identity')!;
    assert.deepEqual(identity['secret'], { secretName: 'orders-identity', defaultMode: 0o444 });
    assert.ok(((sidecar['volumeMounts'] as Obj[]) ?? []).some((m) => m['name'] === 'sts-sidecar-identity'));
    assert.ok(!((spec(out)['containers'] as Obj[])[0]!['volumeMounts'] as Obj[]).some((m) => m['name'] === 'sts-sidecar-identity'));
    assert.equal(config.identity?.cert, '/var/run/secrets/workload-identity/tls.crt');
    assert.equal(config.identity?.key, '/var/run/secrets/workload-identity/tls.key');
  });

  it('puts back, for the repo\'s Deployment and Job examples, the sidecar their authors wrote by hand', async () => {
    const base = await kustomize(repoPath('k8s'));
    for (const kind of ['Deployment', 'Job']) {
      const workload = find(base.objects, kind)[0]!.object;
      const handWritten = (spec(podTemplateOf(workload)!)['initContainers'] as Obj[]).find((c) => c['name'] === 'sts-sidecar')!;
      const out = mutated(examplePodWithoutSidecar(workload));
      await assertValidPod(out, `${kind}-example`);
      const injected = initContainers(out)[0]!;
      for (const key of ['restartPolicy', 'args', 'securityContext', 'resources']) assert.deepEqual(injected[key], handWritten[key], `${kind}: ${key}`);
      for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        assert.equal(((injected[probe] as Obj)['httpGet'] as Obj)['path'], ((handWritten[probe] as Obj)['httpGet'] as Obj)['path'], `${kind}: ${probe}`);
      }
      // Same mount paths, so the example's ConfigMap config finds every file it names.
      const paths = (c: Obj) => ((c['volumeMounts'] as Obj[]) ?? []).map((m) => m['mountPath']).sort();
      assert.deepEqual(paths(injected), paths(handWritten), `${kind}: mount paths`);
      const cm = volumes(out).find((v) => v['name'] === 'sts-sidecar-config')!;
      assert.deepEqual(cm['configMap'], { name: 'sts-sidecar-config' });
    }
  });

  it('is idempotent: the patched pod, reviewed again, gets allowed with no patch; so does a pod written with the sidecar', async () => {
    const once = mutated(fixturePod());
    const again = review(once);
    assert.equal(again.allowed, true);
    assert.equal(again.patch, undefined);
    assert.equal(again.patchType, undefined);
    const base = await kustomize(repoPath('k8s'));
    const handWritten = podTemplateOf(find(base.objects, 'Deployment')[0]!.object)!;
    const pod = structuredClone({ apiVersion: 'v1', kind: 'Pod', ...handWritten }) as Obj;
    ((pod['metadata'] as Obj)['labels'] as Obj)['sts-sidecar.io/inject'] = 'true';
    assert.equal(review(pod).patch, undefined);
  });

  it('refuses invalid and conflicting annotations with allowed: false, status.code 400 and a message naming the annotation', () => {
    const cases: Array<[string, Record<string, string | undefined>, string, ((pod: Obj) => void)?]> = [
      ['not a boolean', { 'sts-sidecar.io/inject': 'yes' }, 'sts-sidecar.io/inject'],
      ['label and annotation disagree', { 'sts-sidecar.io/inject': 'false' }, 'sts-sidecar.io/inject'],
      ['token lifetime below the API minimum', { 'sts-sidecar.io/token-expiration-seconds': '60' }, 'sts-sidecar.io/token-expiration-seconds'],
      ['a port that is no number', { 'sts-sidecar.io/admin-port': 'admin' }, 'sts-sidecar.io/admin-port'],
      ['proxy and admin on one port', { 'sts-sidecar.io/proxy-port': '15000' }, 'sts-sidecar.io/proxy-port'],
      ['ConfigMap and generated config', { 'sts-sidecar.io/config-map': 'mine' }, 'sts-sidecar.io/config-map'],
      ['no upstream and no ConfigMap', { 'sts-sidecar.io/upstream-host': undefined }, 'sts-sidecar.io/upstream-host'],
      ['a plaintext STS', { 'sts-sidecar.io/sts-url': 'http://sts.example.com/token' }, 'sts-sidecar.io/sts-url'],
      ['a host with a scheme', { 'sts-sidecar.io/upstream-host': 'https://orders.internal' }, 'sts-sidecar.io/upstream-host'],
      ['memory request above the default limit', { 'sts-sidecar.io/memory-request': '256Mi' }, 'sts-sidecar.io/memory-request'],
      ['a CPU quantity that is none', { 'sts-sidecar.io/cpu-request': 'lots' }, 'sts-sidecar.io/cpu-request'],
      ['a Secret name that is none', { 'sts-sidecar.io/identity-secret': 'Not_A_Name' }, 'sts-sidecar.io/identity-secret'],
      ['a misspelt annotation', { 'sts-sidecar.io/upstream-hots': 'x' }, 'sts-sidecar.io/upstream-hots'],
      ['proxy-env not a boolean', { 'sts-sidecar.io/proxy-env': 'on' }, 'sts-sidecar.io/proxy-env'],
      ['the injector\'s own annotation preset', { [GENERATED_CONFIG_ANNOTATION]: 'sts: {}' }, GENERATED_CONFIG_ANNOTATION],
      ['a route port the app listens on', { 'sts-sidecar.io/route-port': '8080' }, 'sts-sidecar.io/route-port'],
      ['a scope that is blank', { 'sts-sidecar.io/scope': ' ' }, 'sts-sidecar.io/scope'],
      [
        'proxy-env over the app\'s own proxy',
        { 'sts-sidecar.io/proxy-env': 'true' },
        'sts-sidecar.io/proxy-env',
        (pod) => ((spec(pod)['containers'] as Obj[])[0]!['env'] as Obj[]).push({ name: 'HTTPS_PROXY', value: 'http://corp-proxy:3128' }),
      ],
    ];
    for (const [what, annotations, annotation, edit] of cases) {
      const pod = withAnnotations(fixturePod(), annotations);
      edit?.(pod);
      const answer = review(pod);
      assert.equal(answer.allowed, false, what);
      assert.equal(answer.patch, undefined, what);
      assert.equal(answer.status?.code, 400, what);
      assert.equal(answer.status?.status, 'Failure', what);
      assert.ok(answer.status?.message?.includes(annotation), `${what}: "${String(answer.status?.message)}" names ${annotation}`);
    }
    // A ConfigMap config has no STS URL to take the token's audience from: say which annotation is missing.
    const configMapOnly = withAnnotations(fixturePod(), {
      'sts-sidecar.io/sts-url': undefined,
      'sts-sidecar.io/upstream-host': undefined,
      'sts-sidecar.io/scope': undefined,
      'sts-sidecar.io/route-port': undefined,
      'sts-sidecar.io/config-map': 'orders-sidecar',
    });
    const answer = review(configMapOnly);
    assert.equal(answer.allowed, false);
    assert.match(String(answer.status?.message), /sts-sidecar\.io\/token-audience/);
    const withDefault = review(configMapOnly, {}, parseWebhookConfig({ defaults: { tokenAudience: 'https://sts.example.com' } }));
    assert.equal(withDefault.allowed, true);
  });

  it('proxy-env: HTTP_PROXY, HTTPS_PROXY and NO_PROXY in both cases on every app container; a variable already set the same is kept once', async () => {
    const pod = withAnnotations(fixturePod(), { 'sts-sidecar.io/proxy-env': 'true' });
    const containers = spec(pod)['containers'] as Obj[];
    (containers[0]!['env'] as Obj[]).push({ name: 'http_proxy', value: 'http://127.0.0.1:15001' });
    containers.push({ name: 'worker', image: 'registry.example.com/worker:1' });
    const out = mutated(pod);
    await assertValidPod(out, 'proxy-env');
    for (const container of spec(out)['containers'] as Obj[]) {
      const env = (container['env'] as Obj[]).map((e) => [e['name'], e['value']]);
      for (const name of ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy']) {
        assert.deepEqual(env.filter(([n]) => n === name), [[name, 'http://127.0.0.1:15001']], `${String(container['name'])} ${name}`);
      }
      for (const name of ['NO_PROXY', 'no_proxy']) assert.ok(String(env.find(([n]) => n === name)?.[1]).split(',').includes('127.0.0.1'));
    }
    assert.equal(((spec(out)['containers'] as Obj[])[0]!['env'] as Obj[])[0]!['name'], 'LOG_LEVEL', 'the app\'s own variables stay first');
  });

  it('skips excluded namespaces (kube-system, and the configured ones) with allowed: true and no patch', () => {
    for (const namespace of ['kube-system', 'legacy']) {
      const answer = review(fixturePod(), { namespace });
      assert.deepEqual([answer.allowed, answer.patch, answer.status], [true, undefined, undefined], namespace);
    }
    assert.ok(review(fixturePod(), { namespace: 'team-b' }).patch, 'other namespaces are injected');
  });

  it('dryRun gets the same answer; UPDATEs, other resources and pods that do not ask are allowed untouched', () => {
    const pod = fixturePod();
    const wet = review(pod, { uid: 'u-1' });
    const dry = review(pod, { uid: 'u-1', dryRun: true });
    assert.deepEqual(dry.raw, wet.raw);
    assert.equal(review(pod, { operation: 'UPDATE' }).patch, undefined);
    const notAsking = structuredClone(pod);
    delete ((notAsking['metadata'] as Obj)['labels'] as Obj)['sts-sidecar.io/inject'];
    assert.deepEqual([review(notAsking).allowed, review(notAsking).patch], [true, undefined]);
    const optedOut = structuredClone(pod);
    ((optedOut['metadata'] as Obj)['labels'] as Obj)['sts-sidecar.io/inject'] = 'false';
    assert.equal(review(optedOut).patch, undefined);
  });

  it('uses the webhook\'s default STS, and keeps a "$" in an annotation literal in the generated config', () => {
    const pod = withAnnotations(fixturePod(), { 'sts-sidecar.io/sts-url': undefined, 'sts-sidecar.io/scope': 'orders.read $HOME' });
    const out = mutated(pod, parseWebhookConfig({ defaults: { stsUrl: 'https://sts.internal/v1/token' } }));
    const config = parseConfigText(annotationsOf(out)[GENERATED_CONFIG_ANNOTATION]!, 'generated', { HOME: '/root' });
    assert.equal(config.sts.url.href, 'https://sts.internal/v1/token');
    assert.equal(config.routes[0]!.scope, 'orders.read $HOME');
  });
});

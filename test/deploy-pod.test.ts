/**
 * The sidecar run the way the pod in k8s/ runs it: the image's command line from the
 * Deployment, the ConfigMap's config, and every volume the sidecar mounts laid out the
 * way the kubelet lays it out (timestamped directory, `..data` symlink, file symlinks)
 * under a temporary root. Only what a pod cannot have here is rewritten: listen ports
 * (port 0 on 127.0.0.1), the STS and upstream addresses (loopback servers) and the
 * root of the mount paths. The kubelet's probes are replayed; the projected token and
 * then the workload certificate Secret are rotated the kubelet way while traffic flows
 * to an upstream that requires the client certificate (mTLS); SIGTERM ends it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { mkdir, mkdtemp, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { request } from 'undici';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { createProjectedVolume, type ProjectedVolume } from '../src/demo/projected-volume.js';
import { createWorkloadIssuer, startDevSts, type DevSts, type WorkloadIssuer } from '../src/devsts/index.js';
import { createCertificateAuthority, type CertificateAuthority } from '../src/pki/certificates.js';
import { eventually } from './helpers/eventually.js';
import { forwardTo, startFakeSts, type FakeSts } from './helpers/fake-sts.js';
import { type LoopbackServer } from './helpers/loopback.js';
import { startUpstream } from './helpers/upstream.js';
import { find, isObj, kustomize, metadataOf, podSpecOf, repoPath, type Obj } from './helpers/manifests.js';

const BIN = repoPath('dist', 'src', 'cli', 'main.js');
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+/;

interface Pod {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly sidecar: Obj;
  readonly volumes: Map<string, Obj>;
  readonly configText: string;
}

async function loadPod(): Promise<Pod> {
  const { objects } = await kustomize(repoPath('k8s'));
  const deployment = find(objects, 'Deployment', 'orders-client')[0]!.object;
  const spec = podSpecOf(deployment)!;
  const sidecar = (spec['initContainers'] as Obj[]).find((c) => c['name'] === 'sts-sidecar')!;
  const configMap = find(objects, 'ConfigMap', 'sts-sidecar-config')[0]!.object;
  return {
    namespace: String(metadataOf(deployment)['namespace'] ?? 'default'),
    serviceAccount: String(spec['serviceAccountName']),
    sidecar,
    volumes: new Map((spec['volumes'] as Obj[]).map((v) => [String(v['name']), v])),
    configText: String((configMap['data'] as Obj)['config.yaml']),
  };
}

interface MtlsUpstream extends LoopbackServer {
  /** Per request: the SHA-256 fingerprint of the client certificate, and the Authorization header. */
  readonly seen: Array<{ client: string; authorization: string }>;
}

/** An https upstream that requires a client certificate issued by `ca`. */
async function startMtlsUpstream(ca: CertificateAuthority): Promise<MtlsUpstream> {
  const seen: MtlsUpstream['seen'] = [];
  const server = ca.issue({ commonName: 'orders.internal', subjectAltNames: ['orders.internal', '127.0.0.1'], usage: 'server' });
  const upstream = await startUpstream({
    respond: (req, res, socket) => {
      seen.push({ client: (socket as TLSSocket).getPeerCertificate().fingerprint256, authorization: String(req.headers.authorization) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"orders":[]}');
    },
    tls: { key: server.keyPem, cert: server.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
  });
  return Object.assign(upstream, { seen });
}

describe('the sidecar as the k8s pod runs it', () => {
  let pod: Pod;
  let root: string;
  let issuer: WorkloadIssuer;
  let ca: CertificateAuthority;
  let sts: DevSts;
  let front: FakeSts; // in front of the reference STS: records which subject token each exchange carried
  const subjectTokens = () => front.requests.map((form) => form.get('subject_token') ?? '');
  let upstream: MtlsUpstream;
  let firstLeaf = '';
  const volumes = new Map<string, ProjectedVolume>();
  let child: ChildProcessByStdio<null, Readable, Readable>;
  let stdout = '';
  let stderr = '';
  let exit: Promise<number | null>;
  let adminUrl = '';
  let routeUrl = '';

  /** The mount path of a volume in the sidecar, moved under the temporary root. */
  const onHost = (path: string) => join(root, path);
  const sidecarMounts = () => ((pod.sidecar['volumeMounts'] as Obj[]) ?? []).filter(isObj);
  const tokenProjection = () => {
    const sources = ((pod.volumes.get('sts-token')!['projected'] as Obj)['sources'] as Obj[]) ?? [];
    return sources.map((s) => s['serviceAccountToken']).find(isObj)!;
  };
  const mintProjectedToken = () => {
    const sat = tokenProjection();
    return issuer.mint({
      sub: `system:serviceaccount:${pod.namespace}:${pod.serviceAccount}`,
      aud: String(sat['audience']),
      expiresInSeconds: Number(sat['expirationSeconds']),
      extra: { 'kubernetes.io': { namespace: pod.namespace, serviceaccount: { name: pod.serviceAccount } } },
    });
  };
  const identityFiles = (name: string): { files: Record<string, string>; fingerprint: string } => {
    const leaf = ca.issue({ commonName: name, subjectAltNames: [`${pod.serviceAccount}.${pod.namespace}.svc`], usage: 'client' });
    return { files: { 'tls.crt': leaf.certPem, 'tls.key': leaf.keyPem, 'ca.crt': ca.certPem }, fingerprint: leaf.certificate.fingerprint256 };
  };

  before(async () => {
    pod = await loadPod();
    root = await mkdtemp(join(tmpdir(), 'sts-sidecar-pod-'));
    issuer = createWorkloadIssuer();
    ca = createCertificateAuthority({ commonName: 'pod test workload CA' });

    // The STS trusts the cluster's service-account issuer, for the audience the projected token asks for.
    sts = await startDevSts({ trustedIssuers: [{ issuer: issuer.issuer, jwks: issuer.jwks, audience: String(tokenProjection()['audience']) }] });
    front = await startFakeSts({ answer: forwardTo(sts.url) });
    upstream = await startMtlsUpstream(ca);

    // The config as the ConfigMap has it; only what a pod cannot have here changes.
    const config = parseYaml(pod.configText) as Obj;
    const config0 = structuredClone(config);
    (config['admin'] as Obj)['listen'] = '127.0.0.1:0';
    (config['proxy'] as Obj)['listen'] = '127.0.0.1:0';
    (config['sts'] as Obj)['url'] = front.tokenUrl;
    for (const route of config['routes'] as Obj[]) {
      if (route['listen'] !== undefined) route['listen'] = '127.0.0.1:0';
      // Same scheme as the ConfigMap's (https); trusted through identity.ca, the Secret's ca.crt.
      assert.equal(new URL(String(route['upstream'])).protocol, 'https:');
      route['upstream'] = upstream.url;
    }
    const mountPaths = sidecarMounts().map((m) => String(m['mountPath']));
    const underMount = (v: unknown): unknown => {
      if (typeof v === 'string' && mountPaths.some((p) => v.startsWith(`${p}/`))) return onHost(v);
      if (Array.isArray(v)) return v.map(underMount);
      if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, underMount(x)]));
      return v;
    };
    const rewritten = underMount(config) as Obj;
    // Every file the config names moved under the root: nothing outside a volume is read.
    assert.notDeepEqual(rewritten['subjectToken'], config0['subjectToken']);

    // Each volume the sidecar mounts, written as the kubelet writes it.
    for (const mount of sidecarMounts()) {
      const volume = pod.volumes.get(String(mount['name']))!;
      const dir = onHost(String(mount['mountPath']));
      if (isObj(volume['configMap'])) {
        volumes.set(String(mount['name']), await createProjectedVolume(dir, { 'config.yaml': stringifyYaml(rewritten) }, 0o644));
      } else if (isObj(volume['projected'])) {
        volumes.set(String(mount['name']), await createProjectedVolume(dir, { [String(tokenProjection()['path'])]: await mintProjectedToken() }));
      } else if (isObj(volume['secret'])) {
        const identity = identityFiles('orders-client-1');
        firstLeaf = identity.fingerprint;
        volumes.set(String(mount['name']), await createProjectedVolume(dir, identity.files, Number(volume['secret']['defaultMode'] ?? 0o644)));
      } else if (isObj(volume['emptyDir'])) {
        await mkdir(dir, { recursive: true });
      } else {
        assert.fail(`volume ${String(mount['name'])}: this test does not know its kind`);
      }
    }

    // The container's command line (the image ENTRYPOINT is node + the bin), paths moved under the root.
    const args = (pod.sidecar['args'] as string[]).map((a) => (a.startsWith('/') ? onHost(a) : a));
    const tmp = onHost('/tmp');
    child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: tmp } });
    exit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await eventually(() => stdout.includes('sts-sidecar listening') || child.exitCode !== null, { timeoutMs: 15_000 }).catch(() => {});
    if (!stdout.includes('sts-sidecar listening')) assert.fail(`the sidecar did not start: ${stderr}${stdout}`);
    const line = JSON.parse(stdout.split('\n').find((l) => l.includes('sts-sidecar listening'))!) as {
      admin: string;
      routes: Array<{ name: string; listen: string | null }>;
    };
    adminUrl = line.admin;
    routeUrl = line.routes.find((r) => r.listen)!.listen!;
  });

  after(async () => {
    child?.kill('SIGKILL');
    await upstream?.close();
    await front?.close();
    await sts?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('lays out the volumes as the kubelet does', async () => {
    const token = onHost('/var/run/secrets/tokens/sts-token');
    assert.equal(await readlink(token), join('..data', 'sts-token'));
    assert.match(await readlink(onHost('/var/run/secrets/tokens/..data')), /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$/);
  });

  it('passes the startup probe, then readiness and liveness, as the kubelet would see them', async () => {
    const probe = (name: string) => {
      const get = (pod.sidecar[name] as Obj)['httpGet'] as Obj;
      return { path: String(get['path']), periodSeconds: Number((pod.sidecar[name] as Obj)['periodSeconds'] ?? 10), failureThreshold: Number((pod.sidecar[name] as Obj)['failureThreshold'] ?? 3) };
    };
    const startup = probe('startupProbe');
    // Polled faster than the manifest's period, within the same overall budget.
    let status = 0;
    const started = async () => {
      const res = await request(`${adminUrl}${startup.path}`);
      await res.body.dump();
      status = res.statusCode;
      return status === 200;
    };
    await eventually(started, { timeoutMs: startup.periodSeconds * startup.failureThreshold * 1000, intervalMs: 50 }).catch(() => {});
    assert.equal(status, 200, 'startupProbe');
    for (const name of ['readinessProbe', 'livenessProbe']) {
      const res = await request(`${adminUrl}${probe(name).path}`);
      await res.body.dump();
      assert.equal(res.statusCode, 200, name);
    }
  });

  it('keeps traffic flowing while the kubelet rotates the projected token, then the certificate Secret', async () => {
    const statuses: number[] = [];
    let running = true;
    const worker = async () => {
      while (running) {
        const res = await request(`${routeUrl}/orders/42`);
        await res.body.dump();
        statuses.push(res.statusCode);
      }
    };
    const workers = [worker(), worker(), worker()];
    try {
      await eventually(() => statuses.length > 0 && upstream.seen.length > 0, { what: 'traffic before the rotation' }).catch(() => {});
      const before = statuses.length;
      assert.ok(before > 0, 'traffic flows before the rotation');
      const first = subjectTokens().at(-1)!;
      const injectedBefore = upstream.seen.at(-1)!.authorization;
      assert.equal(upstream.seen.at(-1)!.client, firstLeaf, "the sidecar presents the Secret's certificate");

      const rotated = await mintProjectedToken();
      assert.notEqual(rotated, first);
      const rotatedAt = Math.floor(Date.now() / 1000);
      await volumes.get('sts-token')!.update({ [String(tokenProjection()['path'])]: rotated });

      // The sidecar notices the ..data swap and exchanges the new token at once (fallback poll: pollIntervalSeconds).
      await eventually(() => subjectTokens().includes(rotated), { timeoutMs: 10_000 }).catch(() => {});
      assert.ok(subjectTokens().includes(rotated), 'no exchange with the rotated token');
      // Requests that took the old token before the exchange finish; then the new token is what arrives.
      await eventually(() => upstream.seen.at(-1)!.authorization !== injectedBefore && statuses.length > before).catch(() => {});

      // What reaches the upstream after the rotation is the token exchanged for the new subject token.
      const lastAuth = upstream.seen.at(-1)!.authorization;
      const issued = lastAuth.replace(/^Bearer /, '');
      const { payload } = await jwtVerify(issued, createLocalJWKSet(sts.publicJwks), { issuer: sts.issuer });
      assert.notEqual(lastAuth, injectedBefore, 'a new token is injected after the rotation');
      assert.ok(payload.iat! >= rotatedAt, 'the injected token was issued after the rotation');
      assert.equal(payload.sub, decodeJwt(rotated).sub);
      assert.ok(statuses.length > before, 'traffic went on during and after the rotation');

      // cert-manager renews the Secret; the kubelet swaps ..data in the Secret volume.
      const renewed = identityFiles('orders-client-2');
      const seenBefore = upstream.seen.length;
      await volumes.get('workload-identity')!.update(renewed.files);
      const renewedSeen = () => upstream.seen.slice(seenBefore).some((r) => r.client === renewed.fingerprint);
      await eventually(renewedSeen, { timeoutMs: 15_000 }).catch(() => {});
      assert.ok(renewedSeen(), 'the renewed certificate never reached the upstream');
      // Requests already on connections with the old certificate finish; then only the renewed one is presented.
      await eventually(() => upstream.seen.at(-1)!.client === renewed.fingerprint).catch(() => {});
      assert.equal(upstream.seen.at(-1)!.client, renewed.fingerprint, 'new requests present the renewed certificate');
      assert.match(stdout, /workload identity rotated/);
    } finally {
      running = false;
      await Promise.all(workers);
    }
    assert.deepEqual([...new Set(statuses)], [200], `every request succeeded (${statuses.length} requests)`);
  });

  it('drains and exits 0 on SIGTERM, and never logged a token', async () => {
    child.kill('SIGTERM');
    assert.equal(await exit, 0);
    assert.match(stdout, /shutting down/);
    assert.doesNotMatch(stdout + stderr, JWT_SHAPE);
  });
});

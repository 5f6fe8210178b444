/**
 * `sts-sidecar inject` as a user runs it: --file on the repo's manifests and on every kind
 * that carries a pod (the output validated with kubernetes-models), a refusal's exit code,
 * and the webhook started from the command line, answering over HTTPS until SIGTERM.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments, stringify } from 'yaml';
import { admissionReview, decodeResponse, fixturePod } from './helpers/admission.js';
import { eventually } from './helpers/eventually.js';
import { isObj, podSpecOf, readYamlDocuments, repoPath, schemaErrors, strictFieldErrors, type Obj } from './helpers/manifests.js';
import { createTestPki } from './helpers/pki.js';

const run = promisify(execFile);
const BIN = repoPath('dist', 'src', 'cli', 'main.js');

let dir: string;

async function inject(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [BIN, 'inject', ...args], (err, stdout, stderr) => {
      const code = err ? Number((err as { code?: unknown }).code ?? 1) : 0;
      if (err && typeof (err as { code?: unknown }).code !== 'number') reject(err);
      else resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

function documents(text: string): Obj[] {
  return parseAllDocuments(text).map((d) => d.toJS() as Obj);
}

function sidecarOf(object: Obj): Obj | undefined {
  return ((podSpecOf(object) ?? (object['spec'] as Obj))?.['initContainers'] as Obj[] | undefined)?.find((c) => c['name'] === 'sts-sidecar');
}

describe('sts-sidecar inject (command line)', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inject-cli-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('--file prints the repo\'s legacy Deployment with the sidecar added, and it validates', async () => {
    const out = await inject(['--file', repoPath('k8s', 'legacy-app', 'deployment.yaml'), '--config', join(await writeWebhookConfig(), 'webhook.yaml')]);
    assert.equal(out.code, 0, out.stderr);
    const [deployment, ...rest] = documents(out.stdout);
    assert.equal(rest.length, 0);
    assert.equal(deployment!['kind'], 'Deployment');
    assert.equal(await schemaErrors(deployment!), undefined);
    assert.deepEqual(strictFieldErrors([{ file: repoPath('k8s', 'legacy-app', 'deployment.yaml'), object: deployment! }]), []);
    const sidecar = sidecarOf(deployment!);
    assert.equal(sidecar?.['restartPolicy'], 'Always');
    assert.equal(sidecar?.['image'], 'registry.example.com/sts-sidecar:9.9.9', 'the image from --config');
    const app = (podSpecOf(deployment!)!['containers'] as Obj[])[0]!;
    assert.ok((app['env'] as Obj[]).some((e) => e['name'] === 'http_proxy'));
    // The original file is untouched: --file prints, it does not rewrite.
    const [original] = await readYamlDocuments(repoPath('k8s', 'legacy-app', 'deployment.yaml'));
    assert.equal(podSpecOf(original!)!['initContainers'], undefined);
  });

  it('--file handles every kind that carries a pod, passes other objects through, and reads stdin with "-"', async () => {
    const [legacy] = await readYamlDocuments(repoPath('k8s', 'legacy-app', 'deployment.yaml'));
    const template = (legacy!['spec'] as Obj)['template'] as Obj;
    const selector = (legacy!['spec'] as Obj)['selector'];
    const jobTemplate = { ...structuredClone(template), spec: { ...structuredClone(template['spec'] as Obj), restartPolicy: 'Never' } };
    const objects: Obj[] = [
      { apiVersion: 'v1', kind: 'Pod', metadata: { ...structuredClone(template['metadata'] as Obj), name: 'one' }, spec: structuredClone(template['spec']) },
      { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 's' }, spec: { serviceName: 's', selector, template: structuredClone(template) } },
      { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'd' }, spec: { selector, template: structuredClone(template) } },
      { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j' }, spec: { template: jobTemplate } },
      { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'c' }, spec: { schedule: '@hourly', jobTemplate: { spec: { template: jobTemplate } } } },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc' }, spec: { selector: { app: 'x' }, ports: [{ port: 80 }] } },
    ];
    const out = await inject(['--file', '-'], objects.map((o) => stringify(o)).join('---\n'));
    assert.equal(out.code, 0, out.stderr);
    const results = documents(out.stdout);
    assert.deepEqual(results.map((o) => o['kind']), objects.map((o) => o['kind']));
    for (const object of results) {
      assert.equal(await schemaErrors(object), undefined, String(object['kind']));
      if (object['kind'] === 'Service') {
        assert.deepEqual(object, objects.at(-1));
        continue;
      }
      const pod = object['kind'] === 'CronJob' ? ((((object['spec'] as Obj)['jobTemplate'] as Obj)['spec'] as Obj)['template'] as Obj) : object['kind'] === 'Pod' ? object : ((object['spec'] as Obj)['template'] as Obj);
      const init = ((pod['spec'] as Obj)['initContainers'] as Obj[] | undefined) ?? [];
      assert.equal(init[0]?.['name'], 'sts-sidecar', String(object['kind']));
    }
  });

  it('--file exits 2 with the annotation named when the pod is refused; usage errors exit 2', async () => {
    const pod = fixturePod();
    ((pod['metadata'] as Obj)['annotations'] as Obj)['sts-sidecar.io/token-expiration-seconds'] = '59';
    const file = join(dir, 'refused.yaml');
    await writeFile(file, stringify(pod));
    const refused = await inject(['--file', file]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /sts-sidecar\.io\/token-expiration-seconds/);
    assert.equal(refused.stdout, '');
    assert.equal((await inject([])).code, 2, 'neither --listen nor --file');
    assert.equal((await inject(['--listen', '127.0.0.1:0'])).code, 2, 'no certificate');
    const missing = await inject(['--listen', '127.0.0.1:0', '--tls-cert', join(dir, 'none.crt'), '--tls-key', join(dir, 'none.key')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--tls-(cert|key)/);
    assert.equal((await inject(['--bogus'])).code, 2);
    const badConfig = join(dir, 'bad-webhook.yaml');
    await writeFile(badConfig, 'imagee: x\n');
    const bad = await inject(['--file', file, '--config', badConfig]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /imagee: unknown key/);
    const help = await run(process.execPath, [BIN, '--help']);
    assert.match(help.stdout, /sts-sidecar inject/);
  });

  it('serves the webhook from the command line over HTTPS, and exits 0 on SIGTERM', async () => {
    const pki = createTestPki('inject-cli test CA');
    const certFile = join(dir, 'tls.crt');
    const keyFile = join(dir, 'tls.key');
    await writeFile(certFile, pki.server.certPem);
    await writeFile(keyFile, pki.server.keyPem);
    const child = spawn(process.execPath, [BIN, 'inject', '--listen', '127.0.0.1:0', '--tls-cert', certFile, '--tls-key', keyFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const port = await eventually(
        () => {
          for (const line of stdout.split('\n')) {
            if (!line.trim()) continue;
            const entry = JSON.parse(line) as Obj;
            if (typeof entry['listen'] === 'string') return Number(entry['listen'].split(':').pop());
          }
          return undefined;
        },
        { what: 'the listening log line' },
      );
      const review = admissionReview(fixturePod(), { uid: 'cli-1' });
      const body = JSON.stringify(review);
      const answer = await new Promise<string>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/mutate', method: 'POST', ca: pki.ca.certPem, headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.end(body);
      });
      const response = decodeResponse(JSON.parse(answer));
      assert.deepEqual([response.uid, response.allowed, response.patchType], ['cli-1', true, 'JSONPatch']);
      assert.ok(isObj(JSON.parse(stdout.trim().split('\n').at(-1)!)), 'JSON log lines');
      assert.doesNotMatch(stdout, /orders\.internal/, 'the pod itself is not logged');
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
  });
});

async function writeWebhookConfig(): Promise<string> {
  await writeFile(join(dir, 'webhook.yaml'), 'image: registry.example.com/sts-sidecar:9.9.9\ndefaults:\n  tokenAudience: https://sts.example.com\n');
  return dir;
}

/**
 * The injector served as the API server reaches it: HTTPS to the Service's DNS name, with a
 * serving certificate from a CA made here by Debian's openssl (the commands k8s/injector/
 * certificate.yaml documents for clusters without cert-manager). A client that trusts only
 * that CA (node https with `ca:`, and curl --cacert) gets AdmissionReview answers; one that
 * does not is refused at the handshake. A rotated certificate is served without a restart.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { promisify } from 'node:util';
import { createLogger } from '../src/log/logger.js';
import { startInjectorServer, type InjectorServer } from '../src/inject/server.js';
import { parseWebhookConfig } from '../src/inject/webhook-config.js';
import { openWorkloadIdentity, type WorkloadIdentity } from '../src/tls/identity.js';
import { admissionReview, applyJsonPatch, decodeResponse, fixturePod } from './helpers/admission.js';
import { eventually } from './helpers/eventually.js';
import { schemaErrors, type Obj } from './helpers/manifests.js';
import { kubeletWrite } from './helpers/pki.js';

const run = promisify(execFile);
/** The name the API server dials and checks (k8s/injector/service.yaml, certificate.yaml). */
const SERVICE_DNS = 'sts-sidecar-injector.sts-sidecar-system.svc';

const haveOpenssl = await run('openssl', ['version']).then(
  () => true,
  () => false,
);
const haveCurl = await run('curl', ['--version']).then(
  () => true,
  () => false,
);

let dir: string;
let tlsDir: string;
let caPem: string;
let identity: WorkloadIdentity;
let server: InjectorServer;

/** A serving certificate for SERVICE_DNS signed by the test CA, as the documented openssl commands make it. */
async function opensslLeaf(name: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const crt = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${SERVICE_DNS}`, '-out', csr]);
  await writeFile(ext, `subjectAltName=DNS:${SERVICE_DNS}\nextendedKeyUsage=serverAuth\n`);
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '365', '-out', crt, '-extfile', ext]);
  return { cert: await readFile(crt, 'utf8'), key: await readFile(key, 'utf8') };
}

interface Answer {
  readonly status: number;
  readonly body: string;
}

function post(path: string, body: string, options: RequestOptions): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: server.address.port,
        // As the API server: it dials the Service and checks the certificate names it.
        servername: SERVICE_DNS,
        path,
        method: body ? 'POST' : 'GET',
        headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
        agent: false,
        ...options,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The certificate a fresh handshake is answered with. */
function servedCertificate(): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: server.address.port, servername: SERVICE_DNS, ca: caPem }, () => {
      resolve(socket.getPeerCertificate());
      socket.end();
    });
    socket.on('error', reject);
  });
}

describe('injector over TLS', { skip: haveOpenssl ? false : 'openssl is not installed here (Debian: apt-get install openssl)' }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inject-tls-'));
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '3650', '-subj', '/CN=sts-sidecar-injector-ca', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt')]);
    caPem = await readFile(join(dir, 'ca.crt'), 'utf8');
    const leaf = await opensslLeaf('serving-1');
    // Laid out as the kubelet mounts the cert-manager Secret: ..data swapped on rotation.
    tlsDir = join(dir, 'injector-tls');
    await kubeletWrite(tlsDir, { 'tls.crt': leaf.cert, 'tls.key': leaf.key });
    const config = parseWebhookConfig({ limits: { maxBodyBytes: 256 * 1024 }, tlsPollIntervalSeconds: 0.1 });
    identity = await openWorkloadIdentity({ files: { cert: join(tlsDir, 'tls.crt'), key: join(tlsDir, 'tls.key') }, pollIntervalMs: 100, keyPath: 'tls' });
    const listeners: Array<() => void> = [];
    identity.onChange(() => listeners.forEach((l) => l()));
    server = await startInjectorServer({
      listen: { host: '127.0.0.1', port: 0 },
      config,
      logger: createLogger('silent'),
      certificate: { current: () => identity.current(), onChange: (l) => void listeners.push(l) },
    });
  });
  after(async () => {
    await server?.close();
    identity?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers an AdmissionReview for a client that trusts only its CA, with a patch that yields a valid Pod', async () => {
    const pod = fixturePod();
    const review = admissionReview(pod);
    const answer = await post('/mutate', JSON.stringify(review), { ca: caPem });
    assert.equal(answer.status, 200);
    const response = decodeResponse(JSON.parse(answer.body));
    assert.equal(response.uid, (review['request'] as Obj)['uid']);
    assert.equal(response.allowed, true);
    assert.equal(response.patchType, 'JSONPatch');
    const patched = applyJsonPatch(pod, response.patch!);
    assert.equal(await schemaErrors(patched), undefined);
    // Idempotence over the wire: the patched pod gets no patch.
    const again = decodeResponse(JSON.parse((await post('/mutate', JSON.stringify(admissionReview(patched)), { ca: caPem })).body));
    assert.deepEqual([again.allowed, again.patch], [true, undefined]);
  });

  it('a client that does not trust the CA is refused at the handshake', async () => {
    const failure = await post('/healthz', '', {}).then(
      () => undefined,
      (err: NodeJS.ErrnoException) => err.code,
    );
    assert.ok(failure && ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'].includes(failure), String(failure));
    // Trusting the CA but expecting another name fails too: the certificate is for the Service only.
    const wrongName = await post('/healthz', '', { ca: caPem, servername: 'evil.example' }).then(
      () => undefined,
      (err: NodeJS.ErrnoException) => err.code,
    );
    assert.equal(wrongName, 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('curl with --cacert (and only with it) reaches /healthz and /mutate', { skip: haveCurl ? false : 'curl is not installed here' }, async () => {
    const resolve = ['--resolve', `${SERVICE_DNS}:${server.address.port}:127.0.0.1`];
    const url = `https://${SERVICE_DNS}:${server.address.port}`;
    const health = await run('curl', ['-sS', '-w', '\n%{http_code}', ...resolve, '--cacert', join(dir, 'ca.crt'), `${url}/healthz`]);
    assert.match(health.stdout, /\n200$/);
    const reviewFile = join(dir, 'review.json');
    await writeFile(reviewFile, JSON.stringify(admissionReview(fixturePod(), { uid: 'curl-1' })));
    const mutate = await run('curl', ['-sS', ...resolve, '--cacert', join(dir, 'ca.crt'), '-H', 'content-type: application/json', '--data-binary', `@${reviewFile}`, `${url}/mutate`]);
    const response = decodeResponse(JSON.parse(mutate.stdout));
    assert.deepEqual([response.uid, response.allowed, response.patchType], ['curl-1', true, 'JSONPatch']);
    const untrusted = await run('curl', ['-sS', ...resolve, `${url}/healthz`]).then(
      () => 0,
      (err: { code: number }) => err.code,
    );
    assert.equal(untrusted, 60, 'curl: peer certificate cannot be authenticated with known CA certificates');
  });

  it('serves a rotated certificate on new connections without a restart', async () => {
    const before = await servedCertificate();
    const next = await opensslLeaf('serving-2');
    await kubeletWrite(tlsDir, { 'tls.crt': next.cert, 'tls.key': next.key });
    const after = await eventually(
      async () => {
        const served = await servedCertificate();
        return served.serialNumber !== before.serialNumber && served;
      },
      { what: 'the rotated certificate to be served' },
    );
    assert.equal(after.subject.CN, SERVICE_DNS);
    assert.equal((await post('/healthz', '', { ca: caPem })).status, 200);
  });

  it('bounds and shapes: oversized bodies 413, non-JSON and non-AdmissionReview 400, wrong method 405, unknown path 404', async () => {
    const big = JSON.stringify(admissionReview({ ...fixturePod(), padding: 'x'.repeat(300 * 1024) }));
    assert.equal((await post('/mutate', big, { ca: caPem })).status, 413);
    assert.equal((await post('/mutate', '{not json', { ca: caPem })).status, 400);
    assert.equal((await post('/mutate', JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'x' } }), { ca: caPem })).status, 400);
    assert.equal((await post('/mutate', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }), { ca: caPem })).status, 400);
    assert.equal((await post('/mutate', '', { ca: caPem })).status, 405);
    assert.equal((await post('/elsewhere', '', { ca: caPem })).status, 404);
  });
});

/**
 * DPoP (issue 16) on every path of the proxy, with the reference STS issuing DPoP-bound
 * tokens (and demanding nonces) and resource servers checking with the exported verifier
 * (`sts-sidecar/verify`): reverse proxy over HTTP/1.1, an h2c upstream, gRPC, an intercepted
 * CONNECT tunnel; replays and foreign keys refused by the verifier; the local token endpoint
 * refusing the bound token; the DPoP key rotated from its file.
 */
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer as createH2cServer, type IncomingHttpHeaders as H2Headers } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { request } from 'undici';
import { createWorkloadIssuer, startDevSts, type DevSts } from '../src/devsts/index.js';
import { createDpopProof, generateDpopKey } from '../src/dpop/index.js';
import { BoundTokenError } from '../src/errors.js';
import { DpopReplayCache, verifyDpopProof, verifyDpopRequest } from '../src/verify.js';
import { eventually } from './helpers/eventually.js';
import { makeUpstreamPki, runClient } from './helpers/forward.js';
import { createEchoClient } from './helpers/grpc-client.js';
import { startGrpcServer, type TestGrpcServer } from './helpers/grpc-server.js';
import { parsedLogs, startHarness, startUpstream, TOKEN_TYPE_JWT, type SidecarHarness, type TestUpstream } from './helpers/harness.js';
import { postForm, tempDir, type TempDir } from './helpers/loopback.js';

const workload = createWorkloadIssuer({ issuer: 'https://kubernetes.default.svc' });
const AUDIENCE = 'https://api.internal';

/** The verdicts of a resource server using verifyDpopRequest, by request. */
type Verdict = { status: number; code?: string };

describe('DPoP through the sidecar with the reference STS and the exported verifier', () => {
  let dir: TempDir;
  let sts: DevSts;
  let api: TestUpstream;
  let secure: TestUpstream;
  let grpc: TestGrpcServer;
  let h2: { url: string; seen: H2Headers[]; close(): Promise<void> };
  let h: SidecarHarness;
  let sidecarCa: string;
  const verdicts: Verdict[] = [];
  const replay = new DpopReplayCache();

  /** A resource server's check: the token against the STS's keys, the proof against the request. */
  const judge = async (req: { method: string; headers: Record<string, unknown> }, url: string): Promise<Verdict> => {
    try {
      await verifyDpopRequest({ method: req.method, headers: req.headers as never }, url, { jwks: sts.publicJwks, issuer: sts.issuer, audience: AUDIENCE, replayCache: replay });
      return { status: 200 };
    } catch (err) {
      return { status: 401, code: (err as BoundTokenError).code };
    }
  };

  before(async () => {
    dir = await tempDir();
    const pki = await makeUpstreamPki(dir.path);
    sts = await startDevSts({ trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }], dpopNonce: true });
    const verifying = (origin: () => string) => (req: { method: string; url: string; headers: Record<string, unknown> }, res: import('node:http').ServerResponse) =>
      void judge(req, `${origin()}${req.url}`).then((v) => {
        verdicts.push(v);
        res.writeHead(v.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v));
      });
    api = await startUpstream({ respond: verifying(() => api.url) });
    secure = await startUpstream({ respond: verifying(() => secure.url), tls: pki.server });
    grpc = await startGrpcServer({ authorization: null });
    const seen: H2Headers[] = [];
    const h2server = createH2cServer((req, res) => {
      seen.push(req.headers);
      res.end('ok');
    });
    await new Promise<void>((resolve) => h2server.listen(0, '127.0.0.1', resolve));
    h2 = {
      url: `http://127.0.0.1:${(h2server.address() as AddressInfo).port}`,
      seen,
      close: () => new Promise<void>((resolve) => h2server.close(() => resolve())),
    };
    sidecarCa = join(dir.path, 'sidecar-ca.pem');
    const subject = await workload.mint({ sub: 'system:serviceaccount:apps:orders', aud: 'sts' });
    h = await startHarness({
      subjectToken: { value: subject, type: TOKEN_TYPE_JWT },
      sts: { url: sts.tokenUrl },
      forward: { caCertOut: sidecarCa },
      tokenEndpoint: { listen: '127.0.0.1:0', callers: 'loopback', routes: ['api'] },
      routes: [
        { name: 'api', host: 'api.internal', listen: '127.0.0.1:0', upstream: api.url, audience: AUDIENCE, binding: 'dpop' },
        { name: 'secure', host: 'secure.internal', intercept: true, upstream: secure.url, ca: pki.caFile, audience: AUDIENCE, binding: 'dpop' },
        { name: 'grpc', listen: '127.0.0.1:0', upstream: `http://${grpc.address}`, upstreamProtocol: 'h2c', audience: AUDIENCE, binding: 'dpop' },
        { name: 'h2', listen: '127.0.0.1:0', upstream: h2.url, upstreamProtocol: 'h2c', audience: AUDIENCE, binding: 'dpop' },
      ],
    });
  });
  after(async () => {
    await h?.close();
    await Promise.all([api?.close(), secure?.close(), grpc?.close(), h2?.close(), sts?.close()]);
    await dir?.cleanup();
  });

  const sidecarJkt = () => parsedLogs(h.logs).map((l) => (l['dpopKey'] as { jkt?: string } | undefined)?.jkt).find(Boolean)!;

  it('the reference STS demanded a nonce and bound the token to the sidecar key (cnf.jkt); the verifier accepts the request', async () => {
    const res = await request(`${h.sidecar.routeUrls['api']}/orders?id=1`);
    assert.deepEqual(await res.body.json(), { status: 200 });
    const token = String(api.requests.at(-1)!.headers.authorization).replace(/^DPoP /, '');
    assert.deepEqual(decodeJwt(token)['cnf'], { jkt: sidecarJkt() });
    assert.ok(sts.stats.errors >= 1, 'the first token request met use_dpop_nonce');
  });

  it('the verifier refuses a replayed proof and a proof from another key', async () => {
    await (await request(`${h.sidecar.routeUrls['api']}/again`)).body.text();
    const captured = api.requests.at(-1)!;
    const replayed = await judge({ method: 'GET', headers: captured.headers }, `${api.url}/again`);
    assert.deepEqual(replayed, { status: 401, code: 'ERR_BOUND_TOKEN_DPOP_REPLAYED' });
    const token = String(captured.headers.authorization).replace(/^DPoP /, '');
    const thief = await generateDpopKey();
    const foreign = await createDpopProof(thief, { method: 'GET', url: `${api.url}/again`, accessToken: token });
    assert.deepEqual(await judge({ method: 'GET', headers: { ...captured.headers, dpop: foreign } }, `${api.url}/again`), { status: 401, code: 'ERR_BOUND_TOKEN_DPOP_MISMATCH' });
    const wrongUrl = await judge({ method: 'POST', headers: { ...captured.headers } }, `${api.url}/again`);
    assert.equal(wrongUrl.code, 'ERR_BOUND_TOKEN_DPOP_PROOF_INVALID');
  });

  it('an app-supplied DPoP header is replaced by the sidecar proof', async () => {
    const res = await request(`${h.sidecar.routeUrls['api']}/spoof`, { headers: { dpop: 'app-made-proof' } });
    assert.deepEqual(await res.body.json(), { status: 200 });
  });

  it('intercepted CONNECT (curl through https_proxy): the proof names the https upstream and verifies', async () => {
    const r = await runClient('curl', ['-q', '-sS', '--cacert', sidecarCa, 'https://secure.internal/tunnelled'], { https_proxy: h.sidecar.proxyUrl });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { status: 200 });
  });

  it('gRPC over h2c: the call carries Authorization: DPoP and a proof for POST to the method path', async () => {
    const client = createEchoClient(new URL(h.sidecar.routeUrls['grpc']!).host);
    try {
      await client.unary({ payload: Buffer.from('hi') } as never);
    } finally {
      client.close();
    }
    const call = grpc.calls.at(-1)!;
    assert.match(call.metadata['authorization']!, /^DPoP /);
    const proof = await verifyDpopProof(call.metadata['dpop'], {
      method: 'POST',
      url: `http://${grpc.address}/stssidecar.test.Echo/Unary`,
      accessToken: call.metadata['authorization']!.slice(5),
    });
    assert.equal(proof.jkt, sidecarJkt());
  });

  it('an h2c upstream: the proof names the upstream URL without the query', async () => {
    const res = await request(`${h.sidecar.routeUrls['h2']}/h2/path?q=1`);
    assert.equal(await res.body.text(), 'ok');
    const seen = h2.seen.at(-1)!;
    const proof = await verifyDpopProof(seen['dpop'] as string, { method: 'GET', url: `${h2.url}/h2/path`, accessToken: String(seen['authorization']).slice(5) });
    assert.equal(proof.jkt, sidecarJkt());
  });

  it('/metrics names each route binding', async () => {
    const text = await (await request(`${h.sidecar.adminUrl}/metrics`)).body.text();
    assert.match(text, /sts_sidecar_route_binding_info\{route="api",binding="dpop"\} 1/);
    // Issue 16: the binding is a label of the exchange and request series too.
    assert.match(text, /sts_sidecar_sts_exchanges_total\{route="api",result="success",binding="dpop"\} [1-9]/);
    assert.match(text, /sts_sidecar_proxy_requests_total\{route="api",status_class="2xx",protocol="h1",grpc_status="none",binding="dpop"\} [1-9]/);
  });

  it('/status shows the DPoP key and the key each DPoP route\'s token is bound to, never the key itself', async () => {
    const res = await request(`${h.sidecar.adminUrl}/status`);
    const status = (await res.body.json()) as { dpopKey: { algorithm: string; thumbprint: string } | null; routes: Array<{ name: string; binding: string; token: { boundKeyThumbprint: string | null } }> };
    assert.equal(status.dpopKey?.thumbprint, sidecarJkt());
    const api = status.routes.find((r) => r.name === 'api')!;
    assert.equal(api.binding, 'dpop');
    assert.equal(api.token.boundKeyThumbprint, sidecarJkt());
    assert.doesNotMatch(JSON.stringify(status), /"d":|PRIVATE KEY/);
  });

  it('the local token endpoint never hands out a DPoP-bound token (ERR_TOKEN_DPOP_BOUND)', async () => {
    const reply = await postForm(`${h.sidecar.endpointUrls.token}/token`, {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: 'anything',
      subject_token_type: TOKEN_TYPE_JWT,
      audience: AUDIENCE,
    });
    assert.equal(reply.status, 400);
    assert.equal(reply.body['error'], 'invalid_request');
    assert.equal(reply.body['access_token'], undefined);
    await eventually(() => parsedLogs(h.logs).some((l) => l['code'] === 'ERR_TOKEN_DPOP_BOUND'));
  });
});

describe('the DPoP key from a file', () => {
  it('a rotated key file re-exchanges the routes bound to it; the new token names the new key', async (t) => {
    const dir = await tempDir();
    t.after(() => dir.cleanup());
    const sts = await startDevSts({ trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }] });
    t.after(() => sts.close());
    const api = await startUpstream();
    t.after(() => api.close());
    const keyFile = join(dir.path, 'dpop.pem');
    const pem = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    writeFileSync(keyFile, pem());
    const h = await startHarness({
      subjectToken: { value: await workload.mint({ sub: 'system:serviceaccount:apps:orders', aud: 'sts' }), type: TOKEN_TYPE_JWT },
      sts: { url: sts.tokenUrl },
      dpop: { key: keyFile, pollIntervalSeconds: 0.05 },
      routes: [
        { name: 'api', listen: '127.0.0.1:0', upstream: api.url, audience: AUDIENCE, binding: 'dpop' },
        { name: 'plain', listen: '127.0.0.1:0', upstream: api.url, audience: AUDIENCE },
      ],
    });
    t.after(() => h.close());
    const jkt = async () => {
      await (await request(`${h.sidecar.routeUrls['api']}/`)).body.text();
      return (decodeJwt(String(api.requests.at(-1)!.headers.authorization).replace(/^DPoP /, ''))['cnf'] as { jkt: string }).jkt;
    };
    const first = await jkt();
    const exchangesBefore = sts.stats.exchangesIssued;
    writeFileSync(keyFile, pem());
    // Exactly one re-exchange, for the bound route only; without a request asking for it.
    await eventually(() => sts.stats.exchangesIssued === exchangesBefore + 1);
    assert.notEqual(await jkt(), first);
  });
});

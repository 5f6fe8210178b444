/**
 * Certificate-bound tokens end to end (RFC 8705), with real TLS everywhere: the reference
 * STS over mTLS binds each token to the client certificate it sees; an https upstream that
 * requires a client certificate accepts a token only over the certificate it is bound to
 * (verifyBoundToken). The sidecar holds the workload identity and presents it to both.
 */
import { strict as assert } from 'node:assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { decodeJwt, exportJWK, type JSONWebKeySet } from 'jose';
import { Agent, request } from 'undici';
import { startDevSts, createWorkloadIssuer, type DevSts, type DevStsOptions } from '../src/devsts/index.js';
import { verifyBoundToken } from 'sts-sidecar/verify';
import type { KeyPairPem } from '../src/pki/certificates.js';
import { certificateThumbprint } from '../src/tls/thumbprint.js';
import { eventually, sleep } from './helpers/eventually.js';
import { closeAfter, startHarness, type SidecarHarness } from './helpers/harness.js';
import { startHttpServer, tempDir, type LoopbackServer } from './helpers/loopback.js';
import { createTestPki, kubeletWrite, type TestPki } from './helpers/pki.js';

const AUDIENCE = 'orders';

interface Seen {
  readonly authorization: string | undefined;
  readonly peerThumbprint: string | undefined;
  readonly status: number;
}

interface BoundUpstream extends LoopbackServer {
  readonly seen: Seen[];
}

/** An https upstream that requires a client certificate and checks the token's binding to it. */
async function startBoundUpstream(pki: TestPki, sts: DevSts): Promise<BoundUpstream> {
  const seen: Seen[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket as TLSSocket;
    const peer = socket.getPeerCertificate();
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    verifyBoundToken(token, peer, { jwks: sts.publicJwks, issuer: sts.issuer, audience: AUDIENCE }).then(
      (claims) => {
        seen.push({ authorization: req.headers.authorization, peerThumbprint: peer.raw ? certificateThumbprint(peer.raw) : undefined, status: 200 });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ sub: claims.sub, cnf: claims['cnf'] }));
      },
      (err: { code?: string }) => {
        seen.push({ authorization: req.headers.authorization, peerThumbprint: peer.raw ? certificateThumbprint(peer.raw) : undefined, status: 401 });
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: err.code ?? 'unknown' }));
      },
    );
  };
  const server = pki.server;
  const upstream = await startHttpServer(handler, {
    tls: { key: server.keyPem, cert: server.certPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true },
  });
  return Object.assign(upstream, { seen });
}

interface Scenario {
  readonly pki: TestPki;
  readonly alice: KeyPairPem;
  readonly bob: KeyPairPem;
  readonly sts: DevSts;
  readonly upstream: BoundUpstream;
  readonly sidecar: SidecarHarness;
  readonly identityDir: string;
}

async function scenario(
  t: { after(fn: () => unknown): void },
  options: { sts?: Partial<DevStsOptions>; sidecar?: Record<string, unknown>; identity?: Record<string, unknown> | null } = {},
): Promise<Scenario> {
  const own = closeAfter(t);
  const pki = createTestPki();
  const alice = pki.client('alice');
  const bob = pki.client('bob');
  const workload = createWorkloadIssuer({ issuer: 'https://kubernetes.test' });
  const dir = await tempDir();
  t.after(() => dir.cleanup());
  await kubeletWrite(join(dir.path, 'token'), { token: await workload.mint({ sub: 'system:serviceaccount:shop:orders', aud: 'dev-sts' }) });
  const identityDir = join(dir.path, 'identity');
  await kubeletWrite(identityDir, { 'tls.crt': alice.certPem, 'tls.key': alice.keyPem, 'ca.crt': pki.ca.certPem });

  const sts = own(
    await startDevSts({
      tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, requireClientCert: true },
      trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks, audience: 'dev-sts' }],
      ...options.sts,
    }),
  );
  const upstream = own(await startBoundUpstream(pki, sts));
  const identity =
    options.identity === null
      ? {}
      : { identity: { cert: join(identityDir, 'tls.crt'), key: join(identityDir, 'tls.key'), ca: join(identityDir, 'ca.crt'), pollIntervalSeconds: 0.1, ...options.identity } };
  const sidecar = own(
    await startHarness(
      {
        subjectToken: { file: join(dir.path, 'token', 'token') },
        sts: { url: sts.tokenUrl, ...(options.identity === null ? { ca: join(identityDir, 'ca.crt') } : {}) },
        ...identity,
        cache: { retryInitialDelaySeconds: 0.05, retryMaxDelaySeconds: 0.2 },
        routes: [{ name: 'orders', host: 'orders.test', upstream: upstream.url, audience: AUDIENCE }],
        ...options.sidecar,
      },
      { waitForTokens: options.identity !== null },
    ),
  );
  return { pki, alice, bob, sts, upstream, sidecar, identityDir };
}

async function viaSidecar(s: Scenario, path = '/orders'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(`${s.sidecar.sidecar.proxyUrl}${path}`, { headers: { host: 'orders.test' } });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

/** Call the upstream directly, presenting `cert`, with `authorization`. */
async function direct(s: Scenario, cert: KeyPairPem, authorization: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const agent = new Agent({ connect: { ca: s.pki.ca.certPem, cert: cert.certPem, key: cert.keyPem } });
  try {
    const res = await request(`${s.upstream.url}/orders`, { dispatcher: agent, headers: { authorization } });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  } finally {
    await agent.close();
  }
}

test("RFC 8705 3: alice's token works through the sidecar over alice's certificate and fails with bob's (the seed's scenario)", async (t) => {
  const s = await scenario(t);
  const aliceThumbprint = certificateThumbprint(s.alice.certificate);

  const ok = await viaSidecar(s);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body['sub'], 'system:serviceaccount:shop:orders');
  assert.deepEqual(ok.body['cnf'], { 'x5t#S256': aliceThumbprint });
  assert.equal(s.upstream.seen[0]!.peerThumbprint, aliceThumbprint, 'the sidecar presented alice to the upstream');

  // The token the upstream received, stolen and replayed over bob's certificate: refused.
  const stolen = s.upstream.seen[0]!.authorization!;
  assert.equal((decodeJwt(stolen.slice('Bearer '.length))['cnf'] as Record<string, string>)['x5t#S256'], aliceThumbprint);
  const replay = await direct(s, s.bob, stolen);
  assert.equal(replay.status, 401);
  assert.equal(replay.body['code'], 'ERR_BOUND_TOKEN_MISMATCH');
  // The control: the same token over alice's certificate is accepted, so the certificate made the difference.
  assert.equal((await direct(s, s.alice, stolen)).status, 200);
});

test('RFC 8705 3.1: cnf in the padded standard-base64 form (as the seed\'s STS writes it) is accepted, nothing discarded', async (t) => {
  const s = await scenario(t, { sts: { cnfEncoding: 'base64-padded' } });
  const ok = await viaSidecar(s);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const cnf = (ok.body['cnf'] as Record<string, string>)['x5t#S256']!;
  assert.ok(cnf.endsWith('='), `padded form expected, got ${cnf}`);
  assert.equal(Buffer.from(cnf, 'base64').toString('base64url'), certificateThumbprint(s.alice.certificate));
  const metrics = await (await request(`${s.sidecar.sidecar.adminUrl}/metrics`)).body.text();
  assert.doesNotMatch(metrics, /sts_sidecar_token_binding_mismatches_total\{route="orders"\} [1-9]/);
});

test('RFC 8705 2.1 tls_client_auth: the STS authenticates the sidecar by its certificate; bob\'s identity is refused', async (t) => {
  const s = await scenario(t, {
    sts: { clients: [{ clientId: 'orders-app', tlsClientAuthSanUri: 'spiffe://test.example/alice' }] },
    sidecar: {},
  });
  // Reconfigure a second sidecar with tls_client_auth (the scenario's own has no client auth and is refused).
  const own = closeAfter(t);
  const cfg = (identityCert: string, identityKey: string) => ({
    subjectToken: { value: 'iamtheeggman' },
    sts: { url: s.sts.tokenUrl, clientAuth: { method: 'tls_client_auth', clientId: 'orders-app' } },
    identity: { cert: identityCert, key: identityKey, ca: join(s.identityDir, 'ca.crt') },
    routes: [{ name: 'orders', host: 'orders.test', upstream: s.upstream.url, audience: AUDIENCE }],
  });
  const asAlice = own(await startHarness(cfg(join(s.identityDir, 'tls.crt'), join(s.identityDir, 'tls.key'))));
  assert.equal(asAlice.sidecar.tokens.status()[0]!.valid, true);

  const bobDir = await tempDir();
  t.after(() => bobDir.cleanup());
  await kubeletWrite(bobDir.path, { 'tls.crt': s.bob.certPem, 'tls.key': s.bob.keyPem });
  const asBob = own(await startHarness(cfg(join(bobDir.path, 'tls.crt'), join(bobDir.path, 'tls.key'))));
  const refused = await request(`${asBob.sidecar.proxyUrl}/orders`, { headers: { host: 'orders.test' } });
  const body = (await refused.body.json()) as Record<string, unknown>;
  assert.equal(refused.statusCode, 503);
  assert.equal(body['cause'], 'ERR_STS_OAUTH_ERROR');
  assert.equal(body['stsError'], 'invalid_client');
});

test('RFC 7523 2.2 private_key_jwt signed with the identity key is accepted by the STS', async (t) => {
  const s0 = await scenario(t, { sidecar: {} });
  const jwks: JSONWebKeySet = { keys: [{ ...(await exportJWK(s0.alice.certificate.publicKey)), alg: 'ES256' }] };
  const own = closeAfter(t);
  const sts = own(
    await startDevSts({
      tls: { cert: s0.pki.server.certPem, key: s0.pki.server.keyPem, ca: s0.pki.ca.certPem },
      clients: [{ clientId: 'orders-app', jwks }],
    }),
  );
  const h = own(
    await startHarness({
      subjectToken: { value: 'iamtheeggman' },
      sts: { url: sts.tokenUrl, clientAuth: { method: 'private_key_jwt', clientId: 'orders-app' } },
      identity: { cert: join(s0.identityDir, 'tls.crt'), key: join(s0.identityDir, 'tls.key'), ca: join(s0.identityDir, 'ca.crt') },
      routes: [{ name: 'orders', host: 'orders.test', upstream: s0.upstream.url, audience: AUDIENCE }],
    }),
  );
  assert.equal(h.sidecar.tokens.status()[0]!.valid, true, JSON.stringify(h.sidecar.tokens.status()));
  assert.equal(sts.stats.exchangesIssued, 1);
});

test('an STS that requires a client certificate refuses a sidecar without an identity (invalid_client), clearly', async (t) => {
  const s = await scenario(t, { identity: null });
  const res = await viaSidecar(s);
  assert.equal(res.status, 503);
  assert.equal(res.body['code'], 'ERR_TOKEN_UNAVAILABLE');
  assert.equal(res.body['cause'], 'ERR_STS_OAUTH_ERROR');
  assert.equal(res.body['stsError'], 'invalid_client');
  assert.equal(s.upstream.seen.length, 0);
});

test('rotation under load: alice gets a new certificate and key mid-traffic; zero failures, new tokens bound to the new thumbprint', async (t) => {
  const s = await scenario(t);
  const before = certificateThumbprint(s.alice.certificate);
  const renewed = s.pki.client('alice');
  const after = certificateThumbprint(renewed.certificate);
  assert.notEqual(before, after);

  const statuses = new Map<number, number>();
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const res = await viaSidecar(s);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
  };
  const workers = Array.from({ length: 8 }, worker);
  await eventually(() => (statuses.get(200) ?? 0) >= 8 || statuses.size > 1, { what: 'load before the rotation' });
  await kubeletWrite(s.identityDir, { 'tls.crt': renewed.certPem, 'tls.key': renewed.keyPem, 'ca.crt': s.pki.ca.certPem });
  await eventually(() => s.upstream.seen.at(-1)?.peerThumbprint === after, { timeoutMs: 10_000 }).catch(() => {});
  await sleep(500); // a fixed wait on purpose: keep the load on after the switch, and no request may fail meanwhile
  stop = true;
  await Promise.all(workers);

  const total = [...statuses.values()].reduce((a, b) => a + b, 0);
  assert.deepEqual([...statuses.keys()], [200], `every request succeeded (${JSON.stringify([...statuses])})`);
  assert.ok(total > 50, `enough traffic to mean something (${total} requests)`);
  assert.equal(s.upstream.seen.filter((r) => r.status !== 200).length, 0, 'the upstream refused nothing');
  const tokenThumbprint = (r: Seen) => (decodeJwt(r.authorization!.slice(7))['cnf'] as Record<string, string>)['x5t#S256'];
  assert.ok(s.upstream.seen.some((r) => r.peerThumbprint === before), 'traffic before the rotation used the old certificate');
  const last = s.upstream.seen.at(-1)!;
  assert.equal(last.peerThumbprint, after, 'new connections present the new certificate');
  assert.equal(tokenThumbprint(last), after, 'tokens issued after the rotation are bound to the new thumbprint');
  for (const r of s.upstream.seen) assert.equal(tokenThumbprint(r), r.peerThumbprint, 'every token travelled over its own certificate');
});

test('per-route trust and SNI: servername reaches an upstream whose certificate names something else than its address', async (t) => {
  const s = await scenario(t);
  const named = s.pki.ca.issue({ commonName: 'orders.internal', subjectAltNames: ['orders.internal'], usage: 'server' });
  const own = closeAfter(t);
  // Requires alice's certificate; the token itself is not this test's concern.
  const upstream = own(
    await startHttpServer(
      (req, res) => res.end(JSON.stringify({ peer: (req.socket as TLSSocket).getPeerCertificate().subject?.CN })),
      { tls: { key: named.keyPem, cert: named.certPem, ca: s.pki.ca.certPem, requestCert: true, rejectUnauthorized: true } },
    ),
  );
  const dir = await tempDir();
  t.after(() => dir.cleanup());
  const base = {
    subjectToken: { value: 'iamtheeggman' },
    sts: { url: s.sts.tokenUrl },
    identity: { cert: join(s.identityDir, 'tls.crt'), key: join(s.identityDir, 'tls.key') },
  };
  await kubeletWrite(dir.path, { 'ca.crt': s.pki.ca.certPem });
  const withName = own(
    await startHarness({
      ...base,
      sts: { ...base.sts, ca: join(dir.path, 'ca.crt') },
      routes: [
        { name: 'named', host: 'named.test', upstream: upstream.url, audience: AUDIENCE, ca: join(dir.path, 'ca.crt'), servername: 'orders.internal' },
        { name: 'unnamed', host: 'unnamed.test', upstream: upstream.url, audience: AUDIENCE, ca: join(dir.path, 'ca.crt') },
      ],
    }),
  );
  const good = await request(`${withName.sidecar.proxyUrl}/x`, { headers: { host: 'named.test' } });
  assert.equal(good.statusCode, 200);
  assert.deepEqual(await good.body.json(), { peer: 'alice' });
  const bad = await request(`${withName.sidecar.proxyUrl}/x`, { headers: { host: 'unnamed.test' } });
  const body = (await bad.body.json()) as Record<string, unknown>;
  assert.equal(bad.statusCode, 502);
  assert.equal(body['code'], 'ERR_UPSTREAM_TLS');
});

/**
 * `sts-sidecar demo`: the embedded default. No outside services: the reference STS,
 * a demo upstream that accepts only the exchanged token, and the sidecar, wired
 * together on loopback with certificate-bound tokens (RFC 8705): a demo CA issues
 * alice's workload certificate (the sidecar's identity) and bob's; the STS and the
 * upstream speak mTLS. It sends requests through the sidecar, shows that alice's
 * token is refused over bob's certificate, prints what happened (claims only, never a
 * token) and the curl commands to try, then runs until Ctrl-C.
 */
import { rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeJwt } from 'jose';
import { Agent, request, type Dispatcher } from 'undici';
import { parseConfig } from '../config/load.js';
import { startSidecar } from '../main.js';
import { startDevSts, createWorkloadIssuer, type DevSts } from '../devsts/index.js';
import { startDemoUpstream } from '../demo/upstream.js';
import { dpopDemoStep, startDemoDpopUpstream } from '../demo/dpop.js';
import { grpcDemoStep, loadGrpc, startDemoGrpcUpstream, type DemoGrpcUpstream } from '../demo/grpc.js';
import { ALICE_URI, writeDemoPki } from '../demo/pki.js';
import { certificateThumbprint } from '../tls/thumbprint.js';
import { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE } from '../oauth/urns.js';
import type { LogLevel } from '../config/schema.js';

const USAGE = `Usage: sts-sidecar demo [--once] [--log-level LEVEL]

Starts the reference STS and a demo upstream (both over mTLS) and the sidecar with a
workload certificate on 127.0.0.1, sends requests through the sidecar, shows a token
bound to one certificate being refused over another (RFC 8705), and prints what
happened and the curl commands to try. Certificates live in a temporary directory
that is deleted at exit.
It also makes one gRPC call through the sidecar to a demo gRPC upstream (when
@grpc/grpc-js is installed, as in a checkout), and shows a DPoP-bound token (RFC 9449)
whose replayed proof is refused. Ports 15000 (admin), 15001 (proxy), 15002 (the demo
route), 15003 (the gRPC route), 15004 (the DPoP route), 15080 (the STS), 15090 (the demo
upstream), 15091 (the gRPC upstream) and 15092 (the DPoP upstream) are used when free,
any free port otherwise.

  --once              exit after the first request instead of running until Ctrl-C
  --log-level LEVEL   sidecar log level (default warn, to keep the output readable)
`;

const AUDIENCE = 'http://orders.demo';
const GRPC_AUDIENCE = 'grpc://greeter.demo';
const CLIENT_ID = 'orders-client';

export async function demoCommand(argv: string[]): Promise<number> {
  let values: { once?: boolean | undefined; help?: boolean | undefined; 'log-level'?: string | undefined };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { once: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, 'log-level': { type: 'string' } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`sts-sidecar demo: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const out = (line = '') => process.stdout.write(`${line}\n`);

  const dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-demo-'));
  // The private keys must not outlive the demo, even when it fails half-way.
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const pki = await writeDemoPki(dir);
  const trustOnly = new Agent({ connect: { ca: pki.ca } });
  const asBob = new Agent({ connect: { ca: pki.ca, cert: pki.bob.certPem, key: pki.bob.keyPem } });
  const asAlice = new Agent({ connect: { ca: pki.ca, cert: pki.alice.certPem, key: pki.alice.keyPem } });

  const workloadIssuer = createWorkloadIssuer({ issuer: 'https://kubernetes.default.svc.cluster.local' });
  const [stsPort, upstreamPort] = await Promise.all([freePort(15080), freePort(15090)]);
  const sts = await startDevSts({
    port: stsPort,
    trustedIssuers: [{ issuer: workloadIssuer.issuer, jwks: workloadIssuer.jwks }],
    tokenLifetimeSeconds: 300,
    tls: { cert: pki.sts.certPem, key: pki.sts.keyPem, ca: pki.ca, requireClientCert: true },
    // RFC 8705 2.1: the sidecar authenticates with alice's certificate, identified by its SPIFFE ID.
    clients: [{ clientId: CLIENT_ID, tlsClientAuthSanUri: ALICE_URI }],
  });
  const upstream = await startDemoUpstream({
    jwks: sts.publicJwks,
    issuer: sts.issuer,
    audience: AUDIENCE,
    port: upstreamPort,
    tls: { cert: pki.upstream.certPem, key: pki.upstream.keyPem, ca: pki.ca },
  });

  const dpopUpstream = await startDemoDpopUpstream({ jwks: sts.publicJwks, issuer: sts.issuer, audience: AUDIENCE, port: await freePort(15092) });

  // The gRPC step needs @grpc/grpc-js, a development dependency: skipped in a packaged install.
  const grpc = await loadGrpc();
  let grpcUpstream: DemoGrpcUpstream | undefined;
  if (grpc) {
    grpcUpstream = await startDemoGrpcUpstream(grpc, {
      jwks: sts.publicJwks,
      issuer: sts.issuer,
      audience: GRPC_AUDIENCE,
      port: await freePort(15091),
      tls: { cert: pki.upstream.certPem, key: pki.upstream.keyPem, ca: pki.ca },
    });
  }

  // The ambient credential, laid out like a projected service-account token.
  const tokenFile = join(dir, 'token');
  const mintSubject = () => workloadIssuer.mint({ sub: 'system:serviceaccount:demo:orders-client', aud: sts.issuer, expiresInSeconds: 3600 });
  await writeFile(tokenFile, await mintSubject(), { mode: 0o600 });

  const [adminPort, proxyPort, routePort, grpcRoutePort, dpopRoutePort] = await Promise.all([freePort(15000), freePort(15001), freePort(15002), freePort(15003), freePort(15004)]);
  const config = parseConfig({
    proxy: { listen: `127.0.0.1:${proxyPort}` },
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: (values['log-level'] ?? 'warn') as LogLevel },
    subjectToken: { file: tokenFile, type: TOKEN_TYPE.jwt },
    identity: { cert: pki.files.aliceCert, key: pki.files.aliceKey, ca: pki.files.ca },
    sts: { url: sts.tokenUrl, encoding: 'form', clientAuth: { method: 'tls_client_auth', clientId: CLIENT_ID } },
    routes: [
      {
        name: 'orders',
        host: 'orders.demo',
        listen: `127.0.0.1:${routePort}`,
        upstream: upstream.url,
        audience: AUDIENCE,
        scope: 'orders.read',
      },
      // Issue 16: the same STS, a DPoP-bound token, a plain-HTTP upstream that checks the proofs.
      { name: 'orders-dpop', listen: `127.0.0.1:${dpopRoutePort}`, upstream: dpopUpstream.url, audience: AUDIENCE, binding: 'dpop' },
      // The app speaks h2c to this port; the upstream is TLS offering only h2 (upstreamProtocol auto: ALPN).
      ...(grpcUpstream
        ? [{ name: 'greeter', listen: `127.0.0.1:${grpcRoutePort}`, upstream: `https://${grpcUpstream.address}`, audience: GRPC_AUDIENCE, lazy: true }]
        : []),
    ],
  });
  const sidecar = await startSidecar(config, { waitForTokens: true });
  const routeUrl = sidecar.routeUrls['orders']!;

  const shutdown = async () => {
    await sidecar.close(1000);
    await upstream.close();
    await dpopUpstream.close();
    await grpcUpstream?.close();
    await sts.close();
    await Promise.all([trustOnly.close(), asBob.close(), asAlice.close()]);
    await rm(dir, { recursive: true, force: true });
  };

  const aliceThumbprint = certificateThumbprint(pki.alice.certificate);
  out('sts-sidecar demo: everything runs on this machine, nothing outside is contacted.');
  out();
  out(`  reference STS   ${sts.tokenUrl}  (mTLS, client certificate required; JWKS ${sts.jwksUrl})`);
  out(`  demo upstream   ${upstream.url}  (mTLS; accepts only STS tokens for ${AUDIENCE} bound to the caller's certificate)`);
  out(`  sidecar         proxy ${sidecar.proxyUrl}, route "orders" ${routeUrl}, admin ${sidecar.adminUrl}`);
  out(`  subject token   ${tokenFile} (a service-account-style JWT; never printed)`);
  out(`  identity        ${pki.files.aliceCert} (CN=alice, ${ALICE_URI})`);
  out(`                  x5t#S256 ${aliceThumbprint}  (RFC 8705 3.1: base64url SHA-256 of the DER certificate)`);
  out(`  demo CA         ${pki.files.ca}; bob's certificate ${pki.files.bobCert}`);
  out();

  const direct = await request(`${upstream.url}/orders/42`, { dispatcher: trustOnly });
  out(`1. App -> upstream directly, no token:        HTTP ${direct.statusCode} ${await direct.body.text()}`);
  const proxied = await request(`${routeUrl}/orders/42`);
  const proxiedBody = await proxied.body.text();
  out(`2. App -> sidecar -> upstream (token added):  HTTP ${proxied.statusCode} ${proxiedBody}`);
  const byHost = await request(`${sidecar.proxyUrl}/orders/7`, { headers: { host: 'orders.demo' } });
  out(`3. Same via the shared proxy port, Host: orders.demo: HTTP ${byHost.statusCode}`);
  await byHost.body.dump();
  const legacy = await absoluteFormGet(sidecar.proxyUrl, 'http://orders.demo/orders/9');
  out(`   A legacy app with http_proxy=${sidecar.proxyUrl} asking for http://orders.demo/orders/9: HTTP ${legacy}`);
  out('   (absolute-form request: the sidecar routes by destination, adds the token, speaks mTLS to the upstream)');
  const unmatched = await request(`${sidecar.proxyUrl}/`, { headers: { host: 'elsewhere.example' } });
  out(`4. A host no route names gets no token:       HTTP ${unmatched.statusCode} ${await unmatched.body.text()}`);
  const sidecarCnf = cnfFromUpstreamReply(proxiedBody);
  out(`   The token the sidecar injected carries cnf ${JSON.stringify(sidecarCnf ?? null)}:`);
  out(`   ${sidecarCnf?.['x5t#S256'] === aliceThumbprint ? 'it is bound to alice\'s certificate, the one the sidecar presents.' : 'NOT the thumbprint of the sidecar\'s certificate.'}`);

  // A token as an attacker would steal it: alice's, obtained at the STS over mTLS with her certificate.
  const stolen = await exchangeDirectly(sts, asAlice, await mintSubject());
  const stolenClaims = decodeJwt(stolen);
  out();
  out(`5. Alice's token (exchanged at the STS with alice's certificate; claims sub=${String(stolenClaims.sub)}, cnf ${JSON.stringify(stolenClaims['cnf'] ?? null)}):`);
  const overAlice = await callUpstream(upstream.url, asAlice, stolen);
  out(`   presented over alice's certificate:  HTTP ${overAlice.status}`);
  const overBob = await callUpstream(upstream.url, asBob, stolen);
  out(`   presented over bob's certificate:    HTTP ${overBob.status} ${overBob.text}`);
  out(`   Bob's certificate has x5t#S256 ${certificateThumbprint(pki.bob.certificate)}: a stolen token is useless without alice's key.`);

  out();
  const grpcStep = grpc && grpcUpstream ? await grpcDemoStep(grpc, grpcUpstream, sidecar.routeUrls['greeter'], { ca: pki.ca, cert: pki.alice.certPem, key: pki.alice.keyPem }, out) : undefined;
  if (!grpcStep) out('6. gRPC: skipped (@grpc/grpc-js is a development dependency and is not installed here).');
  out();
  const dpopOk = await dpopDemoStep(dpopUpstream, sidecar.routeUrls['orders-dpop']!, out);

  const [status] = sidecar.tokens.status();
  out();
  out(`The sidecar exchanged the subject token once at the STS (RFC 8693) over mTLS, authenticating with its`);
  out(`certificate (tls_client_auth, RFC 8705 2.1), and cached the result; route "orders" holds a token valid`);
  out(`for another ${Math.floor(status?.expiresInSeconds ?? 0)} s, refreshed ahead of expiry.`);
  out();
  const tlsFlags = `--cacert ${pki.files.ca}`;
  out('Try it:');
  out(`  curl -s ${routeUrl}/orders/42`);
  out(`  curl -s --http2-prior-knowledge ${routeUrl}/orders/42   # HTTP/2 without TLS (h2c), as gRPC apps speak`);
  out(`  curl -s -H 'Host: orders.demo' ${sidecar.proxyUrl}/orders/42`);
  out(`  http_proxy=${sidecar.proxyUrl} curl -s http://orders.demo/orders/42   # a legacy app via the forward proxy`);
  out(`  curl -si ${tlsFlags} ${upstream.url}/orders/42            # direct: 401`);
  out(`  curl -s ${sidecar.adminUrl}/readyz`);
  out(`  curl -s ${sidecar.adminUrl}/metrics | grep '^sts_sidecar_'`);
  out(`  curl -s ${tlsFlags} --cert ${pki.files.aliceCert} --key ${pki.files.aliceKey} -d client_id=${CLIENT_ID} \\`);
  out(`       -d grant_type=${GRANT_TYPE_TOKEN_EXCHANGE} -d subject_token=iamtheeggman \\`);
  out(`       -d subject_token_type=${TOKEN_TYPE.accessToken} ${sts.tokenUrl}   # the seed's exchange, over mTLS`);
  out(`  curl -s ${tlsFlags} ${sts.tokenUrl} -d x=y   # no client certificate: 401 invalid_client`);
  out();

  const ok =
    proxied.statusCode === 200 &&
    direct.statusCode === 401 &&
    unmatched.statusCode === 404 &&
    sidecarCnf?.['x5t#S256'] === aliceThumbprint &&
    overAlice.status === 200 &&
    overBob.status === 401 &&
    dpopOk &&
    // Skipped (no grpc-js installed) does not fail the demo; a failed call does.
    grpcStep?.ok !== false;
  if (grpcStep && !grpcStep.ok) out('The gRPC call did not go through; see step 6.');
  if (!ok) out('The demo did not behave as expected; see the responses above.');
  if (values.once) {
    await shutdown();
    return ok ? 0 : 1;
  }
  out('Running until Ctrl-C.');
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop).off('SIGTERM', stop);
      void shutdown().then(() => resolve(0));
    };
    process.on('SIGINT', stop).on('SIGTERM', stop);
  });
}

/** An RFC 8693 exchange at the STS over mTLS, as the certificate holder of `dispatcher`. Returns the token: never print it. */
/** What an app with http_proxy set sends (RFC 9112 3.2.2 absolute-form); resolves to the status. */
function absoluteFormGet(proxyUrl: string, target: string): Promise<number> {
  const proxy = new URL(proxyUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: proxy.hostname, port: proxy.port, method: 'GET', path: target, headers: { host: new URL(target).host } }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', reject);
    req.end();
  });
}

async function exchangeDirectly(sts: DevSts, dispatcher: Dispatcher, subjectToken: string): Promise<string> {
  const res = await request(sts.tokenUrl, {
    method: 'POST',
    dispatcher,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: GRANT_TYPE_TOKEN_EXCHANGE,
      subject_token: subjectToken,
      subject_token_type: TOKEN_TYPE.jwt,
      audience: AUDIENCE,
      client_id: CLIENT_ID,
    }).toString(),
  });
  const body = (await res.body.json()) as { access_token?: unknown; error?: unknown };
  if (res.statusCode !== 200 || typeof body.access_token !== 'string') {
    throw new Error(`the demo's own exchange at the STS failed: HTTP ${res.statusCode} ${String(body.error)}`);
  }
  return body.access_token;
}

async function callUpstream(url: string, dispatcher: Dispatcher, token: string): Promise<{ status: number; text: string }> {
  const res = await request(`${url}/orders/42`, { dispatcher, headers: { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, text: await res.body.text() };
}

function cnfFromUpstreamReply(text: string): Record<string, unknown> | undefined {
  try {
    const cnf = (JSON.parse(text) as { token?: { cnf?: unknown } }).token?.cnf;
    return typeof cnf === 'object' && cnf !== null ? (cnf as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The preferred port when it is free, else any free port (the demo must start even when 1500x is taken). */
async function freePort(preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(undefined));
      s.listen(port, '127.0.0.1', () => {
        const actual = (s.address() as { port: number }).port;
        s.close(() => resolve(actual));
      });
    });
  return (await tryListen(preferred)) ?? (await tryListen(0))!;
}


/**
 * `sts-sidecar demo`: the embedded default. No outside services: the reference STS,
 * a demo upstream that accepts only the exchanged token, and the sidecar, wired
 * together on loopback. It sends a request through the sidecar, prints what happened
 * (tokens redacted) and the curl commands to try, then runs until Ctrl-C.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { parseConfig } from '../config/load.js';
import { startSidecar } from '../main.js';
import { startDevSts, createWorkloadIssuer } from '../devsts/index.js';
import { startDemoUpstream } from '../demo/upstream.js';
import type { LogLevel } from '../config/schema.js';

const USAGE = `Usage: sts-sidecar demo [--once] [--log-level LEVEL]

Starts the reference STS, a demo upstream and the sidecar on 127.0.0.1, sends one
request through the sidecar and prints what happened and the curl commands to try.
Ports 15000 (admin), 15001 (proxy), 15002 (the demo route), 15080 (the STS) and
15090 (the demo upstream) are used when free, any free port otherwise.

  --once              exit after the first request instead of running until Ctrl-C
  --log-level LEVEL   sidecar log level (default warn, to keep the output readable)
`;

const AUDIENCE = 'http://orders.demo';

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

  const workloadIssuer = await createWorkloadIssuer({ issuer: 'https://kubernetes.default.svc.cluster.local' });
  const [stsPort, upstreamPort] = await Promise.all([freePort(15080), freePort(15090)]);
  const sts = await startDevSts({
    port: stsPort,
    trustedIssuers: [{ issuer: workloadIssuer.issuer, jwks: workloadIssuer.jwks }],
    tokenLifetimeSeconds: 300,
  });
  const upstream = await startDemoUpstream({ jwksUrl: sts.jwksUrl, issuer: sts.issuer, audience: AUDIENCE, port: upstreamPort });

  // The ambient credential, laid out like a projected service-account token.
  const dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-demo-'));
  const tokenFile = join(dir, 'token');
  await writeFile(
    tokenFile,
    await workloadIssuer.mint({ sub: 'system:serviceaccount:demo:orders-client', aud: sts.issuer, expiresInSeconds: 3600 }),
    { mode: 0o600 },
  );

  const [adminPort, proxyPort, routePort] = await Promise.all([freePort(15000), freePort(15001), freePort(15002)]);
  const config = parseConfig({
    proxy: { listen: `127.0.0.1:${proxyPort}` },
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: (values['log-level'] ?? 'warn') as LogLevel },
    subjectToken: { file: tokenFile, type: 'urn:ietf:params:oauth:token-type:jwt' },
    sts: { url: sts.tokenUrl, encoding: 'form' },
    routes: [
      {
        name: 'orders',
        host: 'orders.demo',
        listen: `127.0.0.1:${routePort}`,
        upstream: upstream.url,
        audience: AUDIENCE,
        scope: 'orders.read',
      },
    ],
  });
  const sidecar = await startSidecar(config, { waitForTokens: true });
  const routeUrl = sidecar.routeUrls['orders']!;

  const shutdown = async () => {
    await sidecar.close(1000);
    await upstream.close();
    await sts.close();
    await rm(dir, { recursive: true, force: true });
  };

  out('sts-sidecar demo: everything runs on this machine, nothing outside is contacted.');
  out();
  out(`  reference STS   ${sts.tokenUrl}  (JWKS ${sts.jwksUrl})`);
  out(`  demo upstream   ${upstream.url}  (accepts only STS tokens for audience ${AUDIENCE})`);
  out(`  sidecar         proxy ${sidecar.proxyUrl}, route "orders" ${routeUrl}, admin ${sidecar.adminUrl}`);
  out(`  subject token   ${tokenFile} (a service-account-style JWT; never printed)`);
  out();

  const direct = await request(`${upstream.url}/orders/42`);
  out(`1. App -> upstream directly, no token:        HTTP ${direct.statusCode} ${await direct.body.text()}`);
  const proxied = await request(`${routeUrl}/orders/42`);
  const proxiedBody = await proxied.body.text();
  out(`2. App -> sidecar -> upstream (token added):  HTTP ${proxied.statusCode} ${proxiedBody}`);
  const byHost = await request(`${sidecar.proxyUrl}/orders/7`, { headers: { host: 'orders.demo' } });
  out(`3. Same via the shared proxy port, Host: orders.demo: HTTP ${byHost.statusCode}`);
  await byHost.body.dump();
  const unmatched = await request(`${sidecar.proxyUrl}/`, { headers: { host: 'elsewhere.example' } });
  out(`4. A host no route names gets no token:       HTTP ${unmatched.statusCode} ${await unmatched.body.text()}`);
  const [status] = sidecar.tokens.status();
  out();
  out(`The sidecar exchanged the subject token once at the STS (RFC 8693) and cached the result;`);
  out(`route "orders" holds a token valid for another ${Math.floor(status?.expiresInSeconds ?? 0)} s, refreshed ahead of expiry.`);
  out();
  out('Try it:');
  out(`  curl -s ${routeUrl}/orders/42`);
  out(`  curl -s -H 'Host: orders.demo' ${sidecar.proxyUrl}/orders/42`);
  out(`  curl -si ${upstream.url}/orders/42            # direct: 401`);
  out(`  curl -s ${sidecar.adminUrl}/readyz`);
  out(`  curl -s ${sidecar.adminUrl}/metrics | grep '^sts_sidecar_'`);
  out(`  curl -s -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange -d subject_token=iamtheeggman \\`);
  out(`       -d subject_token_type=urn:ietf:params:oauth:token-type:access_token ${sts.tokenUrl}   # the seed's exchange`);
  out();

  const ok = proxied.statusCode === 200 && direct.statusCode === 401 && unmatched.statusCode === 404;
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

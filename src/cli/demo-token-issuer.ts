/**
 * `sts-sidecar demo-token-issuer`: stands in, in the compose demo, for what Kubernetes
 * does for a pod: the API server signs service-account tokens and publishes its keys
 * (GET /openid/v1/jwks), and the kubelet keeps a projected token file fresh, rotating it
 * at 80 % of its lifetime with the `..data` symlink swap. The key lives in memory only.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createWorkloadIssuer, DEFAULT_WORKLOAD_ISSUER } from '../devsts/index.js';
import { createProjectedVolume } from '../demo/projected-volume.js';
import { listenUrl } from '../http/listen-address.js';
import { sendJson } from '../http/reply.js';
import { parseListenFlag, UsageError, waitForStopSignal } from './serve-helpers.js';

const USAGE = `Usage: sts-sidecar demo-token-issuer --out DIR --audience AUD --sub SUB [options]

Mints service-account-style JWTs (RS256) into DIR/FILE the way the kubelet writes a
projected token volume, re-minting at 80 % of --lifetime, and serves the public keys
at GET /openid/v1/jwks (as the API server does) for the STS to trust. Runs until
SIGTERM or SIGINT. Tokens are never printed.

Options:
  --out DIR            directory to write into (a shared volume)
  --file NAME          token file name (default token)
  --audience AUD       "aud" of the tokens (the STS's expected audience)
  --sub SUB            "sub", e.g. system:serviceaccount:demo:orders-client
  --issuer URL         "iss" (default ${DEFAULT_WORKLOAD_ISSUER})
  --lifetime SECONDS   token lifetime (default 600, minimum 10)
  --listen HOST:PORT   JWKS listener (default 127.0.0.1:8070)
  -h, --help           this help
`;

interface Options {
  host: string;
  port: number;
  out: string;
  file: string;
  audience: string;
  sub: string;
  issuer: string;
  lifetimeSeconds: number;
}

function parse(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      out: { type: 'string' },
      file: { type: 'string' },
      audience: { type: 'string' },
      sub: { type: 'string' },
      issuer: { type: 'string' },
      lifetime: { type: 'string' },
      listen: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  if (!values.out || !values.audience || !values.sub) throw new UsageError('--out, --audience and --sub are required');
  const lifetimeSeconds = Number(values.lifetime ?? '600');
  if (!Number.isInteger(lifetimeSeconds) || lifetimeSeconds < 10) throw new UsageError(`--lifetime: expected whole seconds >= 10, got '${values.lifetime}'`);
  const issuer = values.issuer ?? DEFAULT_WORKLOAD_ISSUER;
  if (!URL.canParse(issuer)) throw new UsageError(`--issuer: '${issuer}' is not a URL`);
  return {
    ...parseListenFlag('--listen', values.listen ?? '127.0.0.1:8070'),
    out: values.out,
    file: values.file ?? 'token',
    audience: values.audience,
    sub: values.sub,
    issuer,
    lifetimeSeconds,
  };
}

export async function demoTokenIssuerCommand(argv: string[]): Promise<number> {
  let options: Options | 'help';
  try {
    options = parse(argv);
  } catch (err) {
    process.stderr.write(`demo-token-issuer: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const { out, file, audience, sub, lifetimeSeconds } = options;
  const issuer = createWorkloadIssuer({ issuer: options.issuer });
  const mint = async () => ({ [file]: await issuer.mint({ sub, aud: audience, expiresInSeconds: lifetimeSeconds }) });
  const volume = await createProjectedVolume(out, await mint());

  const server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/openid/v1/jwks' || req.url === '/healthz')) {
      return sendJson(res, 200, req.url === '/healthz' ? { status: 'ok' } : issuer.jwks, { 'cache-control': 'max-age=60' });
    }
    sendJson(res, 404, { error: 'not found' });
  });
  await new Promise<void>((resolve) => server.listen(options.port, options.host, resolve));
  const { address, port } = server.address() as AddressInfo;
  process.stdout.write(
    `demo token issuer ${options.issuer}: JWKS at ${listenUrl({ host: address, port })}/openid/v1/jwks; ` +
      `token for ${sub} (aud ${audience}) in ${out}/${file}, rotated every ${Math.floor(lifetimeSeconds * 0.8)} s\n`,
  );

  // The kubelet refreshes a projected token once 80 % of its lifetime has passed.
  const timer = setInterval(() => {
    mint()
      .then((files) => volume.update(files))
      .then(
        () => process.stdout.write(`rotated ${out}/${file}\n`),
        (err: unknown) => process.stderr.write(`demo-token-issuer: rotation failed: ${(err as Error).message}\n`),
      );
  }, lifetimeSeconds * 800);
  await waitForStopSignal();
  clearInterval(timer);
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return 0;
}

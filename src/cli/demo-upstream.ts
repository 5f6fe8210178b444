/**
 * `sts-sidecar demo-upstream`: the demo resource server on its own, for the compose
 * demo (deploy/docker-compose.yml). It accepts only JWTs the reference STS issued for
 * its audience; everything else gets 401 with an RFC 6750 WWW-Authenticate.
 */
import { parseArgs } from 'node:util';
import { startDemoUpstream } from '../demo/upstream.js';
import { parseListenFlag, requireUrl, UsageError, waitForStopSignal } from './serve-helpers.js';

const USAGE = `Usage: sts-sidecar demo-upstream --jwks-url URL --issuer ISS --audience AUD [--listen HOST:PORT]

Runs the demo upstream: answers 200 with the verified token's claims (never the token)
when the request carries a bearer JWT signed by a key of --jwks-url with issuer --issuer
and audience --audience, 401 otherwise. Runs until SIGTERM or SIGINT.

Options:
  --listen HOST:PORT   address to listen on (default 127.0.0.1:8090)
  --jwks-url URL       the STS's JWKS (e.g. http://sts:8081/.well-known/jwks.json)
  --issuer ISS         the STS's issuer ("iss" of the tokens it issues)
  --audience AUD       the audience this upstream requires
  -h, --help           this help
`;

export async function demoUpstreamCommand(argv: string[]): Promise<number> {
  let options: { host: string; port: number; jwksUrl: string; issuer: string; audience: string };
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        listen: { type: 'string' },
        'jwks-url': { type: 'string' },
        issuer: { type: 'string' },
        audience: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (values.issuer === undefined || values.audience === undefined) throw new UsageError('--issuer and --audience are required');
    options = {
      ...parseListenFlag('--listen', values.listen ?? '127.0.0.1:8090'),
      jwksUrl: requireUrl('--jwks-url', values['jwks-url']),
      issuer: values.issuer,
      audience: values.audience,
    };
  } catch (err) {
    process.stderr.write(`demo-upstream: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const upstream = await startDemoUpstream(options);
  process.stdout.write(`demo upstream listening on ${upstream.url} (audience ${options.audience}, issuer ${options.issuer})\n`);
  await waitForStopSignal();
  await upstream.close();
  return 0;
}

/**
 * `sts-sidecar dev-sts`: run the reference STS from the command line until
 * SIGINT/SIGTERM. Flag problems are reported on stderr naming the flag (exit 2);
 * nothing secret (client secrets, static tokens) is ever printed.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import pino, { type Logger } from 'pino';
import type { JSONWebKeySet } from 'jose';
import { startDevSts, type DevStsOptions, type StaticRule, type TrustedIssuer } from './server.js';

export const DEV_STS_USAGE = `Usage: sts-sidecar dev-sts [options]

Runs the reference STS (RFC 8693 token exchange) for the demo and local development.

Options:
  --listen HOST:PORT         address to listen on (default 127.0.0.1:8081; IPv6 as [::1]:8081)
  --issuer URL               "iss" of issued JWTs (default: the listening URL)
  --token-lifetime SECONDS   lifetime of issued JWT access tokens (default 3600)
  --static SUBJECT=ISSUED    exchange the subject token SUBJECT for the opaque token ISSUED
                             (expires_in 60); repeatable; replaces the default
                             iamtheeggman=iamthewalrus
  --trust-issuer ISSUER      accept JWT subject and actor tokens issued by ISSUER;
                             repeatable, paired in order with --trust-jwks
  --trust-jwks FILE|URL      the issuer's public keys: a JWKS JSON file or an http(s) URL
  --client ID:SECRET         register a client and require client authentication
                             (client_secret_basic or client_secret_post); repeatable
  -h, --help                 show this help
`;

export interface DevStsCommandIo {
  stdout?: { write(chunk: string): unknown };
  stderr?: { write(chunk: string): unknown };
  /** Aborting stops the server like SIGINT does (for tests and embedding). */
  signal?: AbortSignal;
  /** Default: pino to stderr. */
  logger?: Logger;
}

const DEFAULT_LISTEN = '127.0.0.1:8081';

/** A problem with the command line; the message starts with the flag at fault. */
class UsageError extends Error {}

export async function runDevStsCommand(argv: string[], io: DevStsCommandIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  let options: DevStsOptions | 'help';
  try {
    options = await parseCommandLine(argv);
  } catch (err) {
    // parseArgs' own errors (unknown flag, missing value) already name the flag.
    const message = err instanceof UsageError || isParseArgsError(err) ? err.message : String(err);
    stderr.write(`dev-sts: ${message}\nRun with --help for usage.\n`);
    return 2;
  }
  if (options === 'help') {
    stdout.write(DEV_STS_USAGE);
    return 0;
  }

  const logger = io.logger ?? pino({ name: 'dev-sts' }, pino.destination(2));
  let sts;
  try {
    sts = await startDevSts({ ...options, logger });
  } catch (err) {
    stderr.write(`dev-sts: cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  stdout.write(
    `dev STS listening on ${sts.url}\n` +
      `issuer: ${sts.issuer}\n` +
      `token endpoint: ${sts.tokenUrl}\n` +
      `JWKS: ${sts.jwksUrl}\n`,
  );
  await waitForStop(io.signal);
  await sts.close();
  return 0;
}

async function parseCommandLine(argv: string[]): Promise<DevStsOptions | 'help'> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      listen: { type: 'string' },
      issuer: { type: 'string' },
      'token-lifetime': { type: 'string' },
      static: { type: 'string', multiple: true },
      'trust-issuer': { type: 'string', multiple: true },
      'trust-jwks': { type: 'string', multiple: true },
      client: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';

  const options: DevStsOptions = { ...parseListen(values.listen ?? DEFAULT_LISTEN) };
  if (values.issuer !== undefined) {
    if (!URL.canParse(values.issuer)) throw new UsageError(`--issuer: '${values.issuer}' is not a URL`);
    options.issuer = values.issuer;
  }
  if (values['token-lifetime'] !== undefined) options.tokenLifetimeSeconds = parseLifetime(values['token-lifetime']);
  if (values.static !== undefined) options.staticRules = values.static.map(parseStaticRule);
  options.trustedIssuers = await parseTrust(values['trust-issuer'] ?? [], values['trust-jwks'] ?? []);
  if (values.client !== undefined) options.clients = parseClients(values.client);
  return options;
}

function parseListen(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (match === null || !(port >= 0 && port <= 65535)) {
    throw new UsageError(`--listen: expected HOST:PORT (e.g. ${DEFAULT_LISTEN}), got '${value}'`);
  }
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
}

function parseLifetime(value: string): number {
  const seconds = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new UsageError(`--token-lifetime: expected a positive number of seconds, got '${value}'`);
  }
  return seconds;
}

function parseStaticRule(value: string): StaticRule {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1) {
    // The value may be a real token: do not echo it.
    throw new UsageError('--static: expected SUBJECT=ISSUED with both parts non-empty');
  }
  return { subjectToken: value.slice(0, eq), issuedToken: value.slice(eq + 1), lifetimeSeconds: 60 };
}

function parseClients(values: string[]): { clientId: string; clientSecret: string }[] {
  const seen = new Set<string>();
  return values.map((value) => {
    const colon = value.indexOf(':');
    if (colon <= 0 || colon === value.length - 1) {
      throw new UsageError('--client: expected ID:SECRET with both parts non-empty');
    }
    const clientId = value.slice(0, colon);
    if (seen.has(clientId)) throw new UsageError(`--client: client id '${clientId}' is given twice`);
    seen.add(clientId);
    return { clientId, clientSecret: value.slice(colon + 1) };
  });
}

async function parseTrust(issuers: string[], jwksSources: string[]): Promise<TrustedIssuer[]> {
  if (issuers.length !== jwksSources.length) {
    const flag = issuers.length > jwksSources.length ? '--trust-jwks' : '--trust-issuer';
    throw new UsageError(`${flag}: each --trust-issuer needs exactly one --trust-jwks (got ${issuers.length} and ${jwksSources.length})`);
  }
  const trusted: TrustedIssuer[] = [];
  for (const [i, issuer] of issuers.entries()) {
    if (issuer === '') throw new UsageError('--trust-issuer: must not be empty');
    if (trusted.some((t) => t.issuer === issuer)) throw new UsageError(`--trust-issuer: '${issuer}' is given twice`);
    const source = jwksSources[i] ?? '';
    if (/^https?:\/\//i.test(source)) {
      if (!URL.canParse(source)) throw new UsageError(`--trust-jwks: '${source}' is not a valid URL`);
      trusted.push({ issuer, jwksUrl: source });
    } else {
      trusted.push({ issuer, jwks: await readJwksFile(source) });
    }
  }
  return trusted;
}

async function readJwksFile(path: string): Promise<JSONWebKeySet> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--trust-jwks: cannot read '${path}' (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`--trust-jwks: '${path}' is not valid JSON`);
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => typeof k === 'object' && k !== null)) {
    throw new UsageError(`--trust-jwks: '${path}' is not a JWKS (expected {"keys": [...]} with at least one key)`);
  }
  if (keys.some((k: Record<string, unknown>) => 'd' in k)) {
    throw new UsageError(`--trust-jwks: '${path}' contains a private key; give the public JWKS only`);
  }
  return parsed as JSONWebKeySet;
}

function isParseArgsError(err: unknown): err is Error {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && (err as NodeJS.ErrnoException).code!.startsWith('ERR_PARSE_ARGS');
}

/** Resolves on SIGINT, SIGTERM or `signal` abort, and removes its listeners. */
function waitForStop(signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      signal?.removeEventListener('abort', stop);
      resolve();
    };
    if (signal?.aborted) return resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    signal?.addEventListener('abort', stop, { once: true });
  });
}

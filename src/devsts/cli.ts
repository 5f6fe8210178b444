/**
 * `sts-sidecar dev-sts`: run the reference STS from the command line until
 * SIGINT/SIGTERM. Flag problems are reported on stderr naming the flag (exit 2);
 * nothing secret (client secrets, static tokens) is ever printed.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import pino, { type Logger } from 'pino';
import type { JSONWebKeySet } from 'jose';
import { parseListenFlag, UsageError } from '../cli/serve-helpers.js';
import { startDevSts, type DevStsClient, type DevStsOptions, type StaticRule, type TrustedIssuer } from './server.js';

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
  --tls-client ID:TYPE=VALUE register a tls_client_auth client (RFC 8705 2.1) whose
                             certificate carries VALUE; TYPE is subject-dn, san-dns,
                             san-uri, san-ip or san-email; repeatable; needs --tls-cert
  --jwt-client ID:FILE       register a private_key_jwt client (RFC 7523 2.2) with the
                             public JWKS in FILE; repeatable
  --tls-cert FILE            serve HTTPS with this PEM certificate (chain allowed) and ask
                             clients for a certificate: issued JWTs are bound to a verified
                             one (cnf.x5t#S256, RFC 8705 3.1)
  --tls-key FILE             the PEM private key of --tls-cert
  --tls-ca FILE              PEM CA certificates client certificates must chain to
                             (default: Node's built-in CAs)
  --require-client-cert      refuse token requests without a verified client certificate
                             (401 invalid_client, RFC 8705 2)
  --cnf-encoding ENC         base64url (RFC 8705 3.1, default) or base64-padded (the
                             padded standard base64 some STSs emit)
  --dpop-nonce               token requests with a DPoP proof must carry a nonce this STS
                             handed out (use_dpop_nonce, RFC 9449 8); a valid proof always
                             binds the token to its key (cnf.jkt, token_type DPoP)
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
      `JWKS: ${sts.jwksUrl}\n` +
      (options.tls
        ? `client certificates: ${options.tls.requireClientCert ? 'required' : 'requested'}; verified ones bind issued JWTs (cnf.x5t#S256)\n`
        : ''),
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
      'tls-client': { type: 'string', multiple: true },
      'jwt-client': { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      'require-client-cert': { type: 'boolean' },
      'cnf-encoding': { type: 'string' },
      'dpop-nonce': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';

  const options: DevStsOptions = { ...parseListenFlag('--listen', values.listen ?? DEFAULT_LISTEN, DEFAULT_LISTEN) };
  if (values.issuer !== undefined) {
    if (!URL.canParse(values.issuer)) throw new UsageError(`--issuer: '${values.issuer}' is not a URL`);
    options.issuer = values.issuer;
  }
  if (values['token-lifetime'] !== undefined) options.tokenLifetimeSeconds = parseLifetime(values['token-lifetime']);
  if (values.static !== undefined) options.staticRules = values.static.map(parseStaticRule);
  options.trustedIssuers = await parseTrust(values['trust-issuer'] ?? [], values['trust-jwks'] ?? []);
  const clients = [
    ...parseClients(values.client ?? []),
    ...(values['tls-client'] ?? []).map(parseTlsClient),
    ...(await Promise.all((values['jwt-client'] ?? []).map(parseJwtClient))),
  ];
  const duplicate = clients.find((c, i) => clients.findIndex((d) => d.clientId === c.clientId) !== i);
  if (duplicate !== undefined) throw new UsageError(`--client/--tls-client/--jwt-client: client id '${duplicate.clientId}' is given twice`);
  if (clients.length > 0) options.clients = clients;
  if (values['dpop-nonce']) options.dpopNonce = true;
  await parseTls(values, options);
  return options;
}

interface TlsFlags {
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  'tls-ca'?: string | undefined;
  'require-client-cert'?: boolean | undefined;
  'cnf-encoding'?: string | undefined;
  'tls-client'?: string[] | undefined;
}

async function parseTls(values: TlsFlags, options: DevStsOptions): Promise<void> {
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  if (cert === undefined) {
    for (const flag of ['tls-key', 'tls-ca', 'require-client-cert', 'tls-client'] as const) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag}: needs --tls-cert (the HTTPS listener)`);
    }
  } else {
    if (key === undefined) throw new UsageError('--tls-key: required with --tls-cert');
    const ca = values['tls-ca'];
    options.tls = {
      cert: await readPemFile('--tls-cert', cert),
      key: await readPemFile('--tls-key', key),
      ...(ca !== undefined ? { ca: await readPemFile('--tls-ca', ca) } : {}),
      requireClientCert: values['require-client-cert'] ?? false,
    };
  }
  const encoding = values['cnf-encoding'];
  if (encoding !== undefined) {
    if (encoding !== 'base64url' && encoding !== 'base64-padded') {
      throw new UsageError(`--cnf-encoding: expected base64url or base64-padded, got '${encoding}'`);
    }
    options.cnfEncoding = encoding;
  }
}

async function readPemFile(flag: string, path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag}: cannot read '${path}' (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  // The content may be a private key: say what is wrong, never show it.
  if (!text.includes('-----BEGIN ')) throw new UsageError(`${flag}: '${path}' is not a PEM file`);
  return text;
}

const TLS_CLIENT_TYPES = {
  'subject-dn': 'tlsClientAuthSubjectDn',
  'san-dns': 'tlsClientAuthSanDns',
  'san-uri': 'tlsClientAuthSanUri',
  'san-ip': 'tlsClientAuthSanIp',
  'san-email': 'tlsClientAuthSanEmail',
} as const;

function parseTlsClient(value: string): DevStsClient {
  const colon = value.indexOf(':');
  const eq = value.indexOf('=', colon + 1);
  const type = value.slice(colon + 1, eq);
  if (colon <= 0 || eq < 0 || eq === value.length - 1 || !Object.hasOwn(TLS_CLIENT_TYPES, type)) {
    throw new UsageError(`--tls-client: expected ID:TYPE=VALUE with TYPE one of ${Object.keys(TLS_CLIENT_TYPES).join(', ')}`);
  }
  const field = TLS_CLIENT_TYPES[type as keyof typeof TLS_CLIENT_TYPES];
  return { clientId: value.slice(0, colon), [field]: value.slice(eq + 1) };
}

async function parseJwtClient(value: string): Promise<DevStsClient> {
  const colon = value.indexOf(':');
  if (colon <= 0 || colon === value.length - 1) throw new UsageError('--jwt-client: expected ID:FILE with both parts non-empty');
  return { clientId: value.slice(0, colon), jwks: await readJwksFile(value.slice(colon + 1), '--jwt-client') };
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

function parseClients(values: string[]): DevStsClient[] {
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

async function readJwksFile(path: string, flag = '--trust-jwks'): Promise<JSONWebKeySet> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag}: cannot read '${path}' (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`${flag}: '${path}' is not valid JSON`);
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => typeof k === 'object' && k !== null)) {
    throw new UsageError(`${flag}: '${path}' is not a JWKS (expected {"keys": [...]} with at least one key)`);
  }
  if (keys.some((k: Record<string, unknown>) => 'd' in k)) {
    throw new UsageError(`${flag}: '${path}' contains a private key; give the public JWKS only`);
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

/**
 * `sts-sidecar token ROUTE --config FILE`: one exchange for one route, as the sidecar would
 * make it (the same builders as main.ts: credentials, identity, STS client, token cache),
 * and what came back, for a person checking a config against a real STS (issue 13). The
 * token itself is printed only with --print-token; its claims are decoded without
 * verifying the signature, which the output says.
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { tokenProviderFromConfig } from '../cache/from-config.js';
import type { CachedToken } from '../cache/token-provider.js';
import { decodeJwtUnverified, numericDate, relativeTime } from '../config/jwt-inspect.js';
import { loadConfigFile } from '../config/load.js';
import { DEFAULT_STS_PROFILE, type Config } from '../config/schema.js';
import { credentialsFromConfig, logSourceError } from '../credentials/from-config.js';
import { SidecarError, TokenUnavailableError } from '../errors.js';
import { Resources } from '../lifecycle/resources.js';
import { createLogger } from '../log/logger.js';
import { createRedactor, scrub } from '../log/redact.js';
import { stsProfileConfigs } from '../sts/profiles.js';
import { stsClientsFromConfig } from '../sts/profiles-from-config.js';
import { identityFromConfig } from '../tls/identity-from-config.js';
import { normalizeThumbprint } from '../tls/thumbprint.js';

const USAGE = `Usage: sts-sidecar token ROUTE --config FILE [--print-token] [--json]

Exchanges the subject token once for ROUTE, as the sidecar would (same STS, client
authentication, identity and route parameters), and prints what the STS issued: token
type, expiry, scope and, when the token is a JWT, its issuer, subject, audience, expiry,
scope and cnf thumbprint (decoded WITHOUT verifying the signature). The token itself is
printed only with --print-token.

Options:
  -c, --config FILE   config file (YAML or JSON); default: $STS_SIDECAR_CONFIG
  --print-token       also print the token (it is a credential: mind your terminal and logs)
  --json              one JSON object on stdout instead of text
  -h, --help          this help

Exit codes: 0 exchanged; 1 the exchange failed (its error code and cause are printed);
2 bad usage or configuration.
`;

interface Options {
  readonly route: string;
  readonly configPath: string;
  readonly printToken: boolean;
  readonly json: boolean;
}

export async function tokenCommand(argv: string[]): Promise<number> {
  const parsed = parseOptions(argv);
  if (typeof parsed === 'number') return parsed;
  let config: Config;
  try {
    config = await loadConfigFile(parsed.configPath);
  } catch (err) {
    return usageError(err);
  }
  const route = config.routes.find((r) => r.name === parsed.route);
  if (!route) {
    process.stderr.write(`sts-sidecar token: no route is named "${parsed.route}"; the config has ${config.routes.map((r) => `"${r.name}"`).join(', ')}\n`);
    return 2;
  }
  const resources = new Resources();
  try {
    return await exchangeOnce(config, parsed, resources);
  } catch (err) {
    return usageError(err);
  } finally {
    await resources.close().catch(() => {});
  }
}

function parseOptions(argv: string[]): Options | number {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        'print-token': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const configPath = values.config ?? process.env['STS_SIDECAR_CONFIG'];
    if (positionals.length !== 1 || !configPath) throw new Error(positionals.length !== 1 ? 'name exactly one ROUTE' : 'no config: pass --config FILE or set STS_SIDECAR_CONFIG');
    return { route: positionals[0]!, configPath, printToken: values['print-token'] === true, json: values.json === true };
  } catch (err) {
    process.stderr.write(`sts-sidecar token: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
}

/** A config that loads but whose parts cannot be opened (a missing file, an unset variable) is a configuration problem. */
function usageError(err: unknown): number {
  if (err instanceof SidecarError) {
    process.stderr.write(`sts-sidecar token: ${err.message}\n`);
    return 2;
  }
  throw err;
}

async function exchangeOnce(config: Config, options: Options, resources: Resources): Promise<number> {
  const redactor = createRedactor();
  // Warnings only, to stderr: stdout carries the result (and with --json, only the result).
  const logger = createLogger('warn', pino.destination({ dest: 2, sync: true }), redactor);
  // The same builders as a running sidecar's (generation.ts): the route's own STS profile and subject token.
  const credentials = await credentialsFromConfig(config, { logger, redactor, resources });
  const identity = await identityFromConfig(config, { logger, observer: { rotated() {}, reloadFailed() {} }, resources });
  const stsClients = await stsClientsFromConfig(config, { identity, redactor, resources, onSourceError: (key) => logSourceError(logger, key) });
  const tokens = tokenProviderFromConfig(config, { credentials, stsClients, identity, observer: undefined, redactor, resources });
  let token: CachedToken;
  try {
    token = await tokens.getToken(options.route);
  } catch (err) {
    if (!(err instanceof TokenUnavailableError)) throw err;
    return reportFailure(err, options, config);
  }
  const report = describeIssued(token, options, config, identity?.current().thumbprint);
  process.stdout.write(options.json ? `${JSON.stringify(report)}\n` : formatReport(report, options.printToken ? token.accessToken : undefined));
  return 0;
}

function reportFailure(err: TokenUnavailableError, options: Options, config: Config): number {
  const cause = err.cause instanceof SidecarError ? err.cause.message : err.message;
  if (options.json) {
    const out = { ok: false, route: options.route, sts: stsWhere(config, options.route), code: err.rootCode, error: err.stsError, errorDescription: err.stsErrorDescription, message: cause };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
  process.stderr.write(`sts-sidecar token: the exchange for route "${options.route}" at ${stsWhere(config, options.route)} failed: ${err.rootCode}: ${cause}\n`);
  return 1;
}

/** The URL of the STS profile the route exchanges at. */
function stsWhere(config: Config, route: string): string {
  const profile = config.routes.find((r) => r.name === route)?.sts ?? DEFAULT_STS_PROFILE;
  const url = stsProfileConfigs(config).find((p) => p.name === profile)?.sts.url ?? config.sts.url;
  return `${url.origin}${url.pathname}`;
}

interface IssuedReport {
  readonly ok: true;
  readonly route: string;
  readonly sts: string;
  readonly issuedTokenType: string;
  readonly tokenType: string;
  readonly expiresAt: string;
  readonly scope: string | undefined;
  /** Claims of a JWT token, decoded without verifying its signature; absent for an opaque token. */
  readonly jwt: { readonly verified: false; readonly claims: Record<string, unknown> } | undefined;
  /** `cnf.x5t#S256`, and whether it is this identity's certificate (RFC 8705 3.1). */
  readonly boundTo: { readonly thumbprint: string; readonly matchesIdentity: boolean | undefined } | undefined;
  readonly accessToken?: string;
}

/** The claims shown, in this order; others are left out (they may be many, or personal). */
const SHOWN_CLAIMS = ['iss', 'sub', 'aud', 'azp', 'client_id', 'scope', 'scp', 'exp', 'iat', 'nbf', 'jti', 'act', 'may_act', 'cnf'] as const;

function describeIssued(token: CachedToken, options: Options, config: Config, identityThumbprint: string | undefined): IssuedReport {
  const decoded = token.accessToken.split('.').length === 3 ? decodeJwtUnverified(token.accessToken) : undefined;
  let jwt: IssuedReport['jwt'];
  let boundTo: IssuedReport['boundTo'];
  if (decoded?.ok) {
    const claims: Record<string, unknown> = {};
    for (const name of SHOWN_CLAIMS) if (decoded.claims[name] !== undefined) claims[name] = safeClaim(decoded.claims[name]);
    jwt = { verified: false, claims };
    const cnf = decoded.claims['cnf'] as Record<string, unknown> | undefined;
    const x5t = typeof cnf?.['x5t#S256'] === 'string' ? (cnf['x5t#S256'] as string) : undefined;
    if (x5t !== undefined) {
      const normal = normalizeThumbprint(x5t);
      boundTo = { thumbprint: normal ?? scrub(x5t, 100), matchesIdentity: identityThumbprint === undefined ? undefined : normal === identityThumbprint };
    }
  }
  return {
    ok: true,
    route: options.route,
    sts: stsWhere(config, options.route),
    issuedTokenType: token.issuedTokenType,
    tokenType: token.tokenType,
    expiresAt: new Date(token.expiresAt).toISOString(),
    scope: token.scope,
    jwt,
    boundTo,
    ...(options.printToken ? { accessToken: token.accessToken } : {}),
  };
}

/** A claim value as shown: JWT-shaped strings scrubbed (an `act` could nest one), long text cut. */
function safeClaim(value: unknown): unknown {
  if (typeof value === 'string') return scrub(value, 200);
  if (Array.isArray(value)) return value.slice(0, 20).map(safeClaim);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).slice(0, 20).map(([k, v]) => [k, safeClaim(v)]));
  return value;
}

function formatReport(r: IssuedReport, accessToken: string | undefined): string {
  const now = Date.now();
  const lines = [
    `route ${r.route}: exchanged at ${r.sts}`,
    `  issued token type  ${r.issuedTokenType}`,
    `  token type         ${r.tokenType}`,
    `  expires            ${r.expiresAt} (${relativeTime(Date.parse(r.expiresAt), now)})`,
    `  scope              ${r.scope ?? '(the STS returned none)'}`,
  ];
  if (r.jwt) {
    lines.push('  JWT claims (decoded WITHOUT verifying the signature):');
    for (const [name, value] of Object.entries(r.jwt.claims)) {
      const when = name === 'exp' || name === 'iat' || name === 'nbf' ? numericDate(r.jwt.claims, name) : undefined;
      const shown = when !== undefined ? `${new Date(when).toISOString()} (${relativeTime(when, now)})` : typeof value === 'string' ? value : Array.isArray(value) && value.every((v) => typeof v === 'string') ? value.join(', ') : JSON.stringify(value);
      lines.push(`    ${name.padEnd(9)}${shown}`);
    }
  } else {
    lines.push('  the token is not a JWT: no claims to show');
  }
  if (r.boundTo) {
    const match = r.boundTo.matchesIdentity === undefined ? '' : r.boundTo.matchesIdentity ? ' (the identity certificate: bound as expected)' : ' (NOT the identity certificate)';
    lines.push(`  bound to           x5t#S256 ${r.boundTo.thumbprint}${match}`);
  }
  lines.push(accessToken === undefined ? '  token              (not shown; pass --print-token)' : `  token              ${accessToken}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Dev STS options: the public shape, and its validation into a frozen, fully
 * defaulted value once at start (a mistake fails `startDevSts`, not a request).
 */
import type { JWK } from 'jose';
import type { Logger } from 'pino';
import { ConfigError } from '../errors.js';
import type { RegisteredClient } from './client-auth.js';
import { DEFAULT_STATIC_LIFETIME_SECONDS, type RejectedTokenError, type StaticRule } from './exchange.js';
import type { TrustedIssuer } from './jwt-verifier.js';

export interface DevStsOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** Default: the server's own base URL, e.g. http://127.0.0.1:PORT. */
  issuer?: string;
  /** Lifetime of issued JWT access tokens; default 3600. */
  tokenLifetimeSeconds?: number;
  /** Default: [{ subjectToken: 'iamtheeggman', issuedToken: 'iamthewalrus', lifetimeSeconds: 60 }]. */
  staticRules?: StaticRule[];
  /** Issuers whose JWTs are accepted as subject and actor tokens. */
  trustedIssuers?: TrustedIssuer[];
  /** If non-empty, client authentication is required (client_secret_basic or client_secret_post). */
  clients?: { clientId: string; clientSecret: string }[];
  /** Default: a fresh ES256 key generated at start. */
  signingKey?: { privateJwk: JWK };
  /** Default 64 KiB; larger bodies get 413 invalid_request. */
  maxBodyBytes?: number;
  /** Error code for refused subject/actor tokens; default 'invalid_grant' (see exchange.ts). */
  rejectedTokenError?: RejectedTokenError;
  /** Never receives subject tokens, issued tokens, secrets or Authorization headers. */
  logger?: Logger;
}

export interface ResolvedDevStsOptions {
  readonly host: string;
  readonly port: number;
  readonly issuer: string | undefined;
  readonly tokenLifetimeSeconds: number;
  readonly staticRules: readonly StaticRule[];
  readonly trustedIssuers: readonly TrustedIssuer[];
  readonly clients: readonly RegisteredClient[];
  readonly signingJwk: JWK | undefined;
  readonly maxBodyBytes: number;
  readonly rejectedTokenError: RejectedTokenError;
  readonly logger: Logger | undefined;
}

/** The seed STS's one rule (grpc-go STS example). */
export const DEFAULT_STATIC_RULES: readonly StaticRule[] = Object.freeze([
  Object.freeze({ subjectToken: 'iamtheeggman', issuedToken: 'iamthewalrus', lifetimeSeconds: DEFAULT_STATIC_LIFETIME_SECONDS }),
]);

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3600;

export function resolveOptions(opts: DevStsOptions = {}): ResolvedDevStsOptions {
  const port = opts.port ?? 0;
  check(Number.isInteger(port) && port >= 0 && port <= 65535, 'port', 'must be an integer from 0 to 65535');
  // RFC 7519 section 4.1.1: iss is a StringOrURI, so any non-empty string will do.
  if (opts.issuer !== undefined) check(typeof opts.issuer === 'string' && opts.issuer.trim() !== '', 'issuer', 'must be a non-empty string');
  const tokenLifetimeSeconds = opts.tokenLifetimeSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS;
  check(isPositiveInteger(tokenLifetimeSeconds), 'tokenLifetimeSeconds', 'must be a positive integer');
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  check(isPositiveInteger(maxBodyBytes), 'maxBodyBytes', 'must be a positive integer');
  const rejectedTokenError = opts.rejectedTokenError ?? 'invalid_grant';
  check(['invalid_grant', 'invalid_request'].includes(rejectedTokenError), 'rejectedTokenError', "must be 'invalid_grant' or 'invalid_request'");

  return Object.freeze({
    host: opts.host ?? '127.0.0.1',
    port,
    issuer: opts.issuer,
    tokenLifetimeSeconds,
    staticRules: Object.freeze((opts.staticRules ?? DEFAULT_STATIC_RULES).map(resolveStaticRule)),
    trustedIssuers: Object.freeze(resolveTrustedIssuers(opts.trustedIssuers ?? [])),
    clients: Object.freeze(resolveClients(opts.clients ?? [])),
    signingJwk: opts.signingKey?.privateJwk,
    maxBodyBytes,
    rejectedTokenError,
    logger: opts.logger,
  });
}

function resolveStaticRule(rule: StaticRule, i: number): StaticRule {
  const path = `staticRules[${i}]`;
  check(typeof rule.subjectToken === 'string' && rule.subjectToken !== '', `${path}.subjectToken`, 'must be a non-empty string');
  check(typeof rule.issuedToken === 'string' && rule.issuedToken !== '', `${path}.issuedToken`, 'must be a non-empty string');
  const lifetimeSeconds = rule.lifetimeSeconds ?? DEFAULT_STATIC_LIFETIME_SECONDS;
  check(isPositiveInteger(lifetimeSeconds), `${path}.lifetimeSeconds`, 'must be a positive integer');
  return Object.freeze({ subjectToken: rule.subjectToken, issuedToken: rule.issuedToken, lifetimeSeconds });
}

function resolveTrustedIssuers(issuers: TrustedIssuer[]): TrustedIssuer[] {
  const seen = new Set<string>();
  return issuers.map((trusted, i) => {
    const path = `trustedIssuers[${i}]`;
    check(typeof trusted.issuer === 'string' && trusted.issuer !== '', `${path}.issuer`, 'must be a non-empty string');
    check(!seen.has(trusted.issuer), `${path}.issuer`, 'is listed twice');
    seen.add(trusted.issuer);
    const hasJwks = trusted.jwks !== undefined;
    check(hasJwks !== (trusted.jwksUrl !== undefined), path, 'needs exactly one of jwks or jwksUrl');
    if (trusted.jwks !== undefined) {
      check(Array.isArray(trusted.jwks.keys), `${path}.jwks.keys`, 'must be an array');
    } else {
      check(isHttpUrl(trusted.jwksUrl ?? ''), `${path}.jwksUrl`, 'must be an http(s) URL');
    }
    return trusted;
  });
}

function resolveClients(clients: { clientId: string; clientSecret: string }[]): RegisteredClient[] {
  const seen = new Set<string>();
  return clients.map((client, i) => {
    const path = `clients[${i}]`;
    check(typeof client.clientId === 'string' && client.clientId !== '', `${path}.clientId`, 'must be a non-empty string');
    check(!seen.has(client.clientId), `${path}.clientId`, 'is listed twice');
    seen.add(client.clientId);
    check(typeof client.clientSecret === 'string' && client.clientSecret !== '', `${path}.clientSecret`, 'must be a non-empty string');
    return Object.freeze({ clientId: client.clientId, clientSecret: client.clientSecret });
  });
}

function check(ok: boolean, path: string, problem: string): asserts ok {
  if (!ok) throw new ConfigError(`devSts.${path}`, problem);
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

function isHttpUrl(value: string): boolean {
  return URL.canParse(value) && /^https?:$/.test(new URL(value).protocol);
}

/**
 * Dev STS options: the public shape, and its validation into a frozen, fully
 * defaulted value once at start (a mistake fails `startDevSts`, not a request).
 */
import { createSecureContext } from 'node:tls';
import type { JSONWebKeySet, JWK } from 'jose';
import type { Logger } from 'pino';
import { ConfigError } from '../errors.js';
import { isValidIdentityValue, type CertificateIdentityKind } from './certificate-identity.js';
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
  /** If non-empty, client authentication is required; each client is registered for one method. */
  clients?: DevStsClient[];
  /**
   * Serve HTTPS and ask for a client certificate (PEM strings). A client certificate
   * that verifies against `ca` (Node's default CAs when absent) binds issued JWTs to
   * it (`cnf.x5t#S256`, RFC 8705 section 3.1) and can authenticate tls_client_auth
   * clients; one that does not verify is refused with invalid_client, never bound.
   */
  tls?: DevStsTlsOptions;
  /**
   * How `cnf.x5t#S256` is written. RFC 8705 section 3.1 mandates base64url without
   * padding (the default); 'base64-padded' emits standard base64 with padding, as the
   * seed's sample STS does, so that tolerant verifiers can be tested against it.
   */
  cnfEncoding?: CnfEncoding;
  /** Upper bound on a private_key_jwt assertion's remaining lifetime (exp - now); default 300. */
  maxClientAssertionLifetimeSeconds?: number;
  /** Default: a fresh ES256 key generated at start. */
  signingKey?: { privateJwk: JWK };
  /** Default 64 KiB; larger bodies get 413 invalid_request. */
  maxBodyBytes?: number;
  /**
   * RFC 9449 section 8: token requests with a DPoP proof must carry a nonce this STS handed
   * out (`use_dpop_nonce` with a `DPoP-Nonce` header otherwise). Default false.
   */
  dpopNonce?: boolean;
  /** Error code for refused subject/actor tokens; default 'invalid_grant' (see exchange.ts). */
  rejectedTokenError?: RejectedTokenError;
  /** Never receives subject tokens, issued tokens, secrets or Authorization headers. */
  logger?: Logger;
}

export interface DevStsTlsOptions {
  /** PEM server certificate (chain allowed). */
  cert: string;
  /** PEM private key of `cert`. */
  key: string;
  /** PEM trust anchors for client certificates. */
  ca?: string;
  /**
   * Refuse token requests without a verified client certificate: 401 invalid_client,
   * as RFC 8705 section 2 prescribes when the expected certificate is missing.
   */
  requireClientCert?: boolean;
}

export type CnfEncoding = 'base64url' | 'base64-padded';

/**
 * A registered client (RFC 7591 metadata, camelCased): `clientSecret` for
 * client_secret_basic/post, exactly one `tlsClientAuth*` value for tls_client_auth
 * (RFC 8705 section 2.1.2), or `jwks` for private_key_jwt (RFC 7523 section 2.2).
 */
export interface DevStsClient {
  clientId: string;
  clientSecret?: string;
  /** RFC 4514 form, most specific first, e.g. `CN=alice,O=Demo`. */
  tlsClientAuthSubjectDn?: string;
  tlsClientAuthSanDns?: string;
  tlsClientAuthSanUri?: string;
  tlsClientAuthSanIp?: string;
  tlsClientAuthSanEmail?: string;
  /** Public keys of the client's assertion signing keys. */
  jwks?: JSONWebKeySet;
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
  readonly dpopNonce: boolean;
  readonly rejectedTokenError: RejectedTokenError;
  readonly tls: Readonly<Required<Omit<DevStsTlsOptions, 'ca'>> & { ca: string | undefined }> | undefined;
  readonly cnfEncoding: CnfEncoding;
  readonly maxClientAssertionLifetimeSeconds: number;
  readonly logger: Logger | undefined;
}

/** The seed STS's one rule (grpc-go STS example). */
export const DEFAULT_STATIC_RULES: readonly StaticRule[] = Object.freeze([
  Object.freeze({ subjectToken: 'iamtheeggman', issuedToken: 'iamthewalrus', lifetimeSeconds: DEFAULT_STATIC_LIFETIME_SECONDS }),
]);

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3600;
export const DEFAULT_MAX_CLIENT_ASSERTION_LIFETIME_SECONDS = 300;

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
  const cnfEncoding = opts.cnfEncoding ?? 'base64url';
  check(['base64url', 'base64-padded'].includes(cnfEncoding), 'cnfEncoding', "must be 'base64url' or 'base64-padded'");
  const maxClientAssertionLifetimeSeconds = opts.maxClientAssertionLifetimeSeconds ?? DEFAULT_MAX_CLIENT_ASSERTION_LIFETIME_SECONDS;
  check(isPositiveInteger(maxClientAssertionLifetimeSeconds), 'maxClientAssertionLifetimeSeconds', 'must be a positive integer');
  const tls = opts.tls === undefined ? undefined : resolveTls(opts.tls);
  const clients = resolveClients(opts.clients ?? []);
  if (tls === undefined) {
    const index = clients.findIndex((c) => c.method === 'tls_client_auth');
    check(index < 0, `clients[${index}]`, 'uses tls_client_auth, which needs the tls option (an HTTPS listener)');
  }

  return Object.freeze({
    host: opts.host ?? '127.0.0.1',
    port,
    issuer: opts.issuer,
    tokenLifetimeSeconds,
    staticRules: Object.freeze((opts.staticRules ?? DEFAULT_STATIC_RULES).map(resolveStaticRule)),
    trustedIssuers: Object.freeze(resolveTrustedIssuers(opts.trustedIssuers ?? [])),
    clients: Object.freeze(clients),
    signingJwk: opts.signingKey?.privateJwk,
    maxBodyBytes,
    dpopNonce: opts.dpopNonce === true,
    rejectedTokenError,
    tls,
    cnfEncoding,
    maxClientAssertionLifetimeSeconds,
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

const TLS_CLIENT_AUTH_FIELDS: ReadonlyArray<[keyof DevStsClient, CertificateIdentityKind]> = [
  ['tlsClientAuthSubjectDn', 'subject_dn'],
  ['tlsClientAuthSanDns', 'san_dns'],
  ['tlsClientAuthSanUri', 'san_uri'],
  ['tlsClientAuthSanIp', 'san_ip'],
  ['tlsClientAuthSanEmail', 'san_email'],
];

function resolveClients(clients: DevStsClient[]): RegisteredClient[] {
  const seen = new Set<string>();
  return clients.map((client, i) => {
    const path = `clients[${i}]`;
    check(typeof client.clientId === 'string' && client.clientId !== '', `${path}.clientId`, 'must be a non-empty string');
    check(!seen.has(client.clientId), `${path}.clientId`, 'is listed twice');
    seen.add(client.clientId);
    const tlsFields = TLS_CLIENT_AUTH_FIELDS.filter(([field]) => client[field] !== undefined);
    const methods = [client.clientSecret !== undefined, tlsFields.length > 0, client.jwks !== undefined].filter(Boolean).length;
    // RFC 8705 section 2.1.2: exactly one tls_client_auth value; RFC 7591: one auth method per client.
    check(methods === 1 && tlsFields.length <= 1, path, 'needs exactly one of clientSecret, one tlsClientAuth* value, or jwks');
    if (client.clientSecret !== undefined) {
      check(typeof client.clientSecret === 'string' && client.clientSecret !== '', `${path}.clientSecret`, 'must be a non-empty string');
      return Object.freeze({ clientId: client.clientId, method: 'client_secret', clientSecret: client.clientSecret });
    }
    const [tlsField] = tlsFields;
    if (tlsField !== undefined) {
      const [field, kind] = tlsField;
      const value = client[field];
      check(typeof value === 'string' && isValidIdentityValue(kind, value), `${path}.${field}`, kind === 'san_ip' ? 'must be an IP address' : kind === 'subject_dn' ? 'must be an RFC 4514 DN such as CN=alice,O=Demo' : 'must be a non-empty string');
      return Object.freeze({ clientId: client.clientId, method: 'tls_client_auth', expected: Object.freeze({ kind, value }) });
    }
    const keys = client.jwks?.keys;
    check(Array.isArray(keys) && keys.length > 0, `${path}.jwks.keys`, 'must be a non-empty array');
    check(keys.every((k) => typeof k === 'object' && k !== null && !('d' in k)), `${path}.jwks.keys`, 'must hold public keys only');
    return Object.freeze({ clientId: client.clientId, method: 'private_key_jwt', jwks: client.jwks! });
  });
}

function resolveTls(tls: DevStsTlsOptions): NonNullable<ResolvedDevStsOptions['tls']> {
  check(typeof tls.cert === 'string' && tls.cert.includes('-----BEGIN'), 'tls.cert', 'must be a PEM certificate');
  check(typeof tls.key === 'string' && tls.key.includes('-----BEGIN'), 'tls.key', 'must be a PEM private key');
  if (tls.ca !== undefined) check(typeof tls.ca === 'string' && tls.ca.includes('-----BEGIN'), 'tls.ca', 'must be PEM certificates');
  try {
    // Loads and cross-checks cert and key now, so a mistake fails start-up, not the first handshake.
    createSecureContext({ cert: tls.cert, key: tls.key, ...(tls.ca !== undefined ? { ca: tls.ca } : {}) });
  } catch (err) {
    // OpenSSL's reason (e.g. "key values mismatch") names no key material.
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConfigError('devSts.tls', `cannot load the certificate, key or CA: ${reason}`, { cause: err });
  }
  return Object.freeze({ cert: tls.cert, key: tls.key, ca: tls.ca, requireClientCert: tls.requireClientCert ?? false });
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

/**
 * The dev STS over HTTP, or HTTPS asking for client certificates (node:http and
 * node:https, no framework): routes, RFC 6749 response framing, live counters and
 * shutdown. It speaks the protocol only; the decisions are in exchange.ts and
 * client-auth.ts, parsing in request-parsing.ts and exchange-request.ts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { JSONWebKeySet } from 'jose';
import type { Logger } from 'pino';
import { listenUrl } from '../http/listen-address.js';
import { sendJson } from '../http/reply.js';
import { certificateThumbprint } from '../tls/thumbprint.js';
import { createClientAuthenticator, type ClientAuthenticator } from './client-auth.js';
import { createExchanger, type Confirmation, type Exchanger, type IssuedToken } from './exchange.js';
import { parseExchangeRequest } from './exchange-request.js';
import { createJwtVerifier } from './jwt-verifier.js';
import { invalidClient, OAuthError } from '../oauth/oauth-error.js';
import { resolveOptions, type CnfEncoding, type DevStsOptions, type ResolvedDevStsOptions } from './options.js';
import { NO_PEER_CERTIFICATE, peerCertificateOf, type PeerCertificate } from './peer-certificate.js';
import { readTokenParams } from '../oauth/request-parsing.js';
import { createTokenSigner } from './token-signer.js';
import { createDevStsDpop, type DevStsDpop } from './dpop.js';

export type { CnfEncoding, DevStsClient, DevStsOptions, DevStsTlsOptions } from './options.js';
export type { StaticRule } from './exchange.js';
export type { TrustedIssuer } from './jwt-verifier.js';

export interface DevStsStats {
  /** Requests that reached a token endpoint path, whatever their outcome. */
  readonly tokenRequests: number;
  /** Successful (200) token responses. */
  readonly exchangesIssued: number;
  /** Error responses from a token endpoint path; tokenRequests = exchangesIssued + errors once idle. */
  readonly errors: number;
}

export interface DevSts {
  /** Base URL, e.g. http://127.0.0.1:PORT (https:// with the tls option). */
  readonly url: string;
  readonly tokenUrl: string;
  readonly jwksUrl: string;
  readonly issuer: string;
  /** Live counters: every read returns the current value. */
  readonly stats: DevStsStats;
  readonly publicJwks: JSONWebKeySet;
  /** Stops listening and closes every socket, idle or not. Safe to call twice. */
  close(): Promise<void>;
}

/** Google's STS serves the same exchange at /v1/token. */
const TOKEN_PATHS: ReadonlySet<string> = new Set(['/token', '/v1/token']);
const JWKS_PATHS: ReadonlySet<string> = new Set(['/.well-known/jwks.json', '/jwks']);
const HEALTH_PATH = '/healthz';

/** RFC 6749 section 5.1: token responses (and errors, section 5.2) must not be cached. */
const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' } as const;

export async function startDevSts(opts: DevStsOptions = {}): Promise<DevSts> {
  const options = resolveOptions(opts);
  const signer = await createTokenSigner(options.signingJwk);
  const verifier = createJwtVerifier(options.trustedIssuers);

  const tls = options.tls;
  const server = tls
    ? createHttpsServer({
        cert: tls.cert,
        key: tls.key,
        ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
        // Ask for a certificate but decide in peer-certificate.ts, so a client without
        // one (or with an untrusted one) gets an RFC 6749 section 5.2 error, not a TLS alert.
        requestCert: true,
        rejectUnauthorized: false,
      })
    : createServer();
  await listen(server, options.host, options.port);
  const url = baseUrl(server.address() as AddressInfo, tls ? 'https' : 'http');
  const issuer = options.issuer ?? url;
  const authenticator = createClientAuthenticator({
    clients: options.clients,
    // RFC 7523 section 3 item 3: the issuer or the token endpoint URL identifies this server.
    assertionAudiences: [...new Set([issuer, url, ...[...TOKEN_PATHS].map((p) => `${url}${p}`)])],
    maxAssertionLifetimeSeconds: options.maxClientAssertionLifetimeSeconds,
  });
  const exchanger = createExchanger({
    issuer,
    staticRules: options.staticRules,
    verifier,
    signer,
    tokenLifetimeSeconds: options.tokenLifetimeSeconds,
    rejectedTokenError: options.rejectedTokenError,
  });
  const counters = { tokenRequests: 0, exchangesIssued: 0, errors: 0 };
  const log = options.logger?.child({ component: 'dev-sts' });
  const handlerDeps: TokenHandlerDeps = {
    options,
    exchanger,
    authenticator,
    counters,
    log,
    dpop: createDevStsDpop({ demandNonce: options.dpopNonce }),
    url,
    ...(tls ? { peerCertificateFor: peerCertificateOf } : {}),
  };

  // Attached after listen() resolved: the continuation runs as a microtask of the
  // 'listening' callback, before any connection can be processed, so none is missed.
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    route(req, res, handlerDeps, signer.publicJwks).catch((err: unknown) => {
      log?.error({ errName: errorName(err) }, 'dev STS request handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: 'internal error' }, NO_STORE);
      else res.destroy();
    });
  });

  let closing: Promise<void> | undefined;
  const stats: DevStsStats = Object.freeze({
    get tokenRequests() {
      return counters.tokenRequests;
    },
    get exchangesIssued() {
      return counters.exchangesIssued;
    },
    get errors() {
      return counters.errors;
    },
  });
  log?.info(
    {
      url,
      issuer,
      kid: signer.kid,
      trustedIssuers: options.trustedIssuers.map((t) => t.issuer),
      ...(tls ? { requireClientCert: tls.requireClientCert, cnfEncoding: options.cnfEncoding } : {}),
    },
    'dev STS listening',
  );

  return Object.freeze({
    url,
    tokenUrl: `${url}/token`,
    jwksUrl: `${url}/.well-known/jwks.json`,
    issuer,
    stats,
    publicJwks: signer.publicJwks,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // close() alone waits for keep-alive sockets; tests and demos must not hang on them.
        server.closeAllConnections();
      });
      return closing;
    },
  });
}

interface TokenHandlerDeps {
  readonly options: ResolvedDevStsOptions;
  readonly exchanger: Exchanger;
  readonly authenticator: ClientAuthenticator;
  readonly counters: { tokenRequests: number; exchangesIssued: number; errors: number };
  readonly log: Logger | undefined;
  readonly dpop: DevStsDpop;
  readonly url: string;
  /** The TLS client certificate of a request; unset on plain HTTP. */
  readonly peerCertificateFor?: (req: IncomingMessage) => PeerCertificate;
}

async function route(req: IncomingMessage, res: ServerResponse, deps: TokenHandlerDeps, jwks: JSONWebKeySet): Promise<void> {
  const path = pathOf(req.url);
  if (TOKEN_PATHS.has(path)) return handleToken(req, res, path, deps);
  if (JWKS_PATHS.has(path)) {
    if (!allowReadOnly(req, res)) return;
    return sendJson(res, 200, jwks, { 'cache-control': 'public, max-age=300' }, 'application/jwk-set+json');
  }
  if (path === HEALTH_PATH) {
    if (!allowReadOnly(req, res)) return;
    return sendJson(res, 200, { status: 'ok' }, { 'cache-control': 'no-store' });
  }
  sendJson(res, 404, { error: 'not_found', error_description: 'no such endpoint' }, NO_STORE);
}

/** RFC 8693 section 2: one POST in, one token (or an RFC 6749 section 5.2 error) out. */
async function handleToken(req: IncomingMessage, res: ServerResponse, path: string, deps: TokenHandlerDeps): Promise<void> {
  const { options, exchanger, authenticator, counters, log } = deps;
  counters.tokenRequests++;
  try {
    if (req.method !== 'POST') {
      // RFC 6749 section 3.2: the client MUST use POST at the token endpoint.
      throw new OAuthError('invalid_request', 'the token endpoint accepts POST only (RFC 6749 section 3.2)', {
        status: 405,
        headers: { allow: 'POST' },
      });
    }
    const params = await readTokenParams(req, options.maxBodyBytes);
    const peer = deps.peerCertificateFor?.(req) ?? NO_PEER_CERTIFICATE;
    checkPeerCertificate(peer, options.tls?.requireClientCert ?? false);
    const client = await authenticator.authenticate({ authorization: req.headers.authorization, params, peer });
    const request = parseExchangeRequest(params);
    const confirmation = peer.state === 'verified' ? confirmationOf(peer.certificate.raw, options.cnfEncoding) : undefined;
    const dpopJkt = await deps.dpop.check(req, `${deps.url}${path}`);
    const issued = await exchanger.exchange(request, { client, confirmation, dpopJkt });
    counters.exchangesIssued++;
    sendJson(res, 200, tokenResponseBody(issued, dpopJkt !== undefined), { ...NO_STORE, ...dpopNonceHeader(deps.dpop) });
    // Identity and types only: never the subject token, the issued token or credentials.
    log?.info(
      {
        path,
        status: 200,
        kind: issued.kind,
        sub: issued.subject,
        clientId: client?.clientId,
        clientAuth: client?.method,
        issuedTokenType: issued.issuedTokenType,
        // The thumbprint names a public certificate: safe to log, and what an operator needs.
        ...(confirmation && issued.kind === 'jwt' ? { x5tS256: confirmation['x5t#S256'] } : {}),
        ...(dpopJkt ? { jkt: dpopJkt } : {}),
      },
      'token issued',
    );
  } catch (err) {
    counters.errors++;
    const oauthError = err instanceof OAuthError ? err : new OAuthError('server_error', 'internal error', { cause: err });
    if (!(err instanceof OAuthError)) log?.error({ path, errName: errorName(err) }, 'token request failed unexpectedly');
    const headers: Record<string, string> = { ...NO_STORE, ...oauthError.headers };
    // After a 413 the rest of the body is unread: close instead of draining an unbounded stream.
    if (oauthError.status === 413) headers['connection'] = 'close';
    sendJson(res, oauthError.status, oauthError.toJSON(), headers);
    log?.info({ path, status: oauthError.status, error: oauthError.error, description: oauthError.message }, 'token request refused');
  }
}

/**
 * A certificate that does not verify is never bound to a token nor used to
 * authenticate; it is refused outright rather than silently ignored, so that a
 * client holding the wrong CA's certificate finds out at the STS and not at every
 * upstream. RFC 8705 section 2: a missing or mismatched certificate is invalid_client.
 */
function checkPeerCertificate(peer: PeerCertificate, required: boolean): void {
  if (peer.state === 'unverified') {
    throw invalidClient(`the client certificate does not verify against the trusted CA (${peer.reason})`);
  }
  if (peer.state === 'absent' && required) {
    throw invalidClient('a client certificate is required on this token endpoint (RFC 8705 section 2)');
  }
}

/**
 * RFC 8705 section 3.1: base64url SHA-256 of the DER certificate without padding;
 * 'base64-padded' reproduces the non-conformant form some STSs (the seed's) emit.
 */
function confirmationOf(der: Buffer, encoding: CnfEncoding): Confirmation {
  const thumbprint = certificateThumbprint(der);
  const value = encoding === 'base64url' ? thumbprint : Buffer.from(thumbprint, 'base64url').toString('base64');
  return Object.freeze({ 'x5t#S256': value });
}

/** Section 8: the current nonce rides on every answer when nonces are demanded. */
function dpopNonceHeader(dpop: DevStsDpop): Record<string, string> {
  const nonce = dpop.nonce;
  return nonce === undefined ? {} : { 'dpop-nonce': nonce };
}

/** RFC 8693 section 2.2.1 response (`token_type: DPoP` for a proof, RFC 9449 5); `scope` only when asked for. */
function tokenResponseBody(issued: IssuedToken, dpop: boolean): Record<string, string | number> {
  return {
    access_token: issued.token,
    issued_token_type: issued.issuedTokenType,
    token_type: dpop ? 'DPoP' : 'Bearer',
    expires_in: issued.expiresInSeconds,
    ...(issued.scope.length > 0 ? { scope: issued.scope.join(' ') } : {}),
  };
}

function allowReadOnly(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return true;
  sendJson(res, 405, { error: 'method_not_allowed', error_description: 'use GET' }, { allow: 'GET, HEAD' });
  return false;
}

/** The path without query; parsed by hand because `new URL('//x', base)` would read `x` as a host. */
function pathOf(rawUrl: string | undefined): string {
  const url = rawUrl ?? '/';
  const end = url.search(/[?#]/);
  return end < 0 ? url : url.slice(0, end);
}

function listen(server: NetServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function baseUrl(address: AddressInfo, scheme: 'http' | 'https'): string {
  return listenUrl({ host: address.address, port: address.port }, scheme);
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}

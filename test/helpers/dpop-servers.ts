/**
 * Servers for the DPoP tests (issue 16) that no one here wrote the protocol side of:
 * oidc-provider with `features.dPoP` as the authorization server (client_credentials, and
 * RFC 8693 token exchange registered as a grant with `registerGrantType`), and a resource
 * server that checks tokens and proofs with jose alone (RFC 9449 section 7.1 and 4.3),
 * keeping seen jtis and, when asked, demanding nonces (section 9).
 */
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createH2cServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, exportJWK, jwtVerify, type JWK } from 'jose';
import { startHttpServer, type LoopbackServer } from './loopback.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const SUBJECT_TOKEN = 'workload-subject-token';
export const CLIENT = { id: 'sidecar', secret: 'sidecar-client-secret' };

export interface AuthorizationServer {
  readonly issuer: string;
  readonly tokenUrl: string;
  readonly jwksUrl: string;
  /** Token requests answered (any outcome): with a proof or not, and the status. */
  readonly requests: Array<{ dpop: boolean; status: number }>;
  /** Demand a DPoP nonce at the token endpoint (features.dPoP.requireNonce). */
  demandNonce: boolean;
  close(): Promise<void>;
}

/** oidc-provider (ESM, untyped here: loaded by name so tsc does not need its types). */
export async function startOidcProvider(resource: string): Promise<AuthorizationServer> {
  const moduleName = 'oidc-provider';
  const { default: Provider, errors } = (await import(moduleName)) as { default: new (issuer: string, config: unknown) => any; errors: any };
  const dpopHelpers = 'oidc-provider/lib/helpers/validate_dpop.js';
  const grantHelpers = 'oidc-provider/lib/helpers/grant_common.js';
  const { default: validateDpop } = (await import(dpopHelpers)) as { default: (provider: unknown, ctx: unknown) => Promise<{ thumbprint: string } | undefined> };
  const { applyDpopBinding } = (await import(grantHelpers)) as { applyDpopBinding: (p: unknown, ctx: unknown, d: unknown, t: unknown) => Promise<void> };

  let provider: any;
  const state = { demandNonce: false };
  const requests: AuthorizationServer['requests'] = [];
  const server = await startHttpServer((req, res) => {
    if (req.url?.startsWith('/token')) {
      const dpop = req.headers.dpop !== undefined;
      res.once('finish', () => requests.push({ dpop, status: res.statusCode }));
    }
    provider.callback()(req, res);
  });
  const issuer = server.url;
  const signing = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const jwk: JWK = { ...(await exportJWK(signing)), kid: 'rs', use: 'sig', alg: 'RS256' };
  const resourceServer = { scope: 'api', audience: resource, accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: { alg: 'RS256' } } };
  provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    clients: [
      {
        client_id: CLIENT.id,
        client_secret: CLIENT.secret,
        grant_types: ['client_credentials', TOKEN_EXCHANGE],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'api',
      },
    ],
    scopes: ['api'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => state.demandNonce },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => resourceServer,
      },
    },
  });
  provider.on('server_error', (_ctx: unknown, err: Error) => console.error('oidc-provider server_error', err));

  // RFC 8693 as a custom grant: the subject token is checked, the token is bound like
  // client_credentials binds it (validate the proof, then cnf.jkt from its key).
  provider.registerGrantType(
    TOKEN_EXCHANGE,
    async (ctx: any) => {
      const { client, params } = ctx.oidc;
      if (params.subject_token !== SUBJECT_TOKEN) throw new errors.InvalidGrant('subject_token not accepted');
      const dPoP = await validateDpop(provider, ctx);
      const token = new provider.ClientCredentials({ client, scope: 'api' });
      token.resourceServer = new provider.ResourceServer(resource, resourceServer);
      await applyDpopBinding(provider, ctx, dPoP, token);
      const value = await token.save();
      ctx.body = { access_token: value, issued_token_type: ACCESS_TOKEN_TYPE, token_type: token.tokenType, expires_in: token.expiration, scope: 'api' };
    },
    ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope', 'actor_token', 'actor_token_type'],
    ['audience', 'resource'],
  );

  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    jwksUrl: `${issuer}/jwks`,
    requests,
    get demandNonce() {
      return state.demandNonce;
    },
    set demandNonce(v: boolean) {
      state.demandNonce = v;
    },
    close: () => server.close(),
  };
}

/** One request as the resource server judged it. */
export interface ResourceRequest {
  readonly authorization: string | undefined;
  readonly dpop: string | undefined;
  readonly status: number;
  /** Why it was refused ('' when served). */
  readonly reason: string;
}

export interface ResourceServer {
  /** Origin without a trailing slash. */
  readonly url: string;
  readonly resource: string;
  readonly seen: ResourceRequest[];
  /** Demand a nonce (section 9): proofs without the current one get 401 use_dpop_nonce. */
  demandNonce: boolean;
  /** A new nonce: clients holding the old one are asked again. */
  rotateNonce(): void;
  close(): Promise<void>;
}

/** A resource server checking DPoP with jose only: token against the issuer's JWKS, proof against its embedded key. */
export interface ResourceServerOptions {
  /** HTTP/1.1 (default) or cleartext HTTP/2 (prior knowledge). */
  readonly protocol?: 'http1' | 'h2c';
  /** The `aud` tokens must carry; default this server's own resource URL. */
  readonly audience?: string;
}

export async function startResourceServer(authorizationServer: () => AuthorizationServer, options: ResourceServerOptions = {}): Promise<ResourceServer> {
  const protocol = options.protocol ?? 'http1';
  const jtis = new Set<string>();
  const seen: ResourceRequest[] = [];
  let nonce = randomBytes(12).toString('base64url');
  let keys: ReturnType<typeof createRemoteJWKSet> | undefined;
  let origin = '';
  let state: { demandNonce: boolean } = { demandNonce: false };

  const refuse = (res: ServerResponse, req: IncomingMessage, reason: string, nonceError = false) => {
    seen.push({ authorization: req.headers.authorization, dpop: req.headers.dpop as string | undefined, status: 401, reason });
    res.writeHead(401, {
      'www-authenticate': nonceError ? 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"' : `DPoP error="invalid_token", algs="ES256 EdDSA RS256"`,
      ...(state.demandNonce ? { 'dpop-nonce': nonce } : {}),
    });
    res.end(reason);
  };

  const check = async (req: IncomingMessage, res: ServerResponse) => {
    const as = authorizationServer();
    keys ??= createRemoteJWKSet(new URL(as.jwksUrl));
    const match = /^DPoP (.+)$/.exec(req.headers.authorization ?? '');
    if (!match) return refuse(res, req, 'no DPoP token');
    const token = match[1]!;
    let jkt: unknown;
    try {
      const { payload } = await jwtVerify(token, keys, { issuer: as.issuer, audience: options.audience ?? `${origin}/` });
      jkt = (payload['cnf'] as Record<string, unknown> | undefined)?.['jkt'];
    } catch {
      return refuse(res, req, 'token invalid');
    }
    const proofHeader = req.headers.dpop;
    if (typeof proofHeader !== 'string') return refuse(res, req, 'no proof');
    let proof;
    try {
      proof = await jwtVerify(proofHeader, EmbeddedJWK, { typ: 'dpop+jwt', maxTokenAge: '60s' });
    } catch {
      return refuse(res, req, 'proof invalid');
    }
    const p = proof.payload;
    const htu = `${origin}${(req.url ?? '/').split('?')[0]}`;
    if (p['htm'] !== req.method || p['htu'] !== htu) return refuse(res, req, 'htm/htu');
    if (p['ath'] !== createHash('sha256').update(token).digest('base64url')) return refuse(res, req, 'ath');
    if ((await calculateJwkThumbprint(proof.protectedHeader.jwk!)) !== jkt) return refuse(res, req, 'key is not cnf.jkt');
    if (state.demandNonce && p['nonce'] !== nonce) return refuse(res, req, 'nonce', true);
    if (typeof p.jti !== 'string' || jtis.has(p.jti)) return refuse(res, req, 'replayed jti');
    jtis.add(p.jti);
    seen.push({ authorization: req.headers.authorization, dpop: proofHeader, status: 200, reason: '' });
    res.writeHead(200, { 'content-type': 'text/plain', ...(state.demandNonce ? { 'dpop-nonce': nonce } : {}) });
    res.end(`hello ${req.method} ${req.url}`);
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    void check(req, res).catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  };
  let close: () => Promise<void>;
  if (protocol === 'http1') {
    const server: LoopbackServer = await startHttpServer(handler);
    origin = server.url;
    close = () => server.close();
  } else {
    // The compatibility API's request and response fit the handler (node:http2).
    const server = createH2cServer(handler as never);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  }
  const rs: ResourceServer = {
    url: origin,
    resource: `${origin}/`,
    seen,
    demandNonce: false,
    rotateNonce: () => void (nonce = randomBytes(12).toString('base64url')),
    close: () => close(),
  };
  state = rs;
  return rs;
}

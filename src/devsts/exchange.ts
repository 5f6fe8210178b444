/**
 * The token exchange decision (RFC 8693 section 2): given a validated request and
 * who is asking, either issue a token or refuse with an OAuthError. Static rules
 * come first (the seed STS's `iamtheeggman` -> `iamthewalrus`), then verified JWTs
 * are re-issued as JWT access tokens signed by this STS (RFC 9068).
 */
import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { JWT_BEARING_TOKEN_TYPES, TOKEN_TYPE_ACCESS_TOKEN, type IssuableTokenType } from './constants.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { ExchangeRequest } from './exchange-request.js';
import { TokenRejectedError, looksLikeJwt, type JwtVerifier, type TokenRole } from './jwt-verifier.js';
import { OAuthError } from '../oauth/oauth-error.js';
import type { TokenSigner } from './token-signer.js';

export interface StaticRule {
  /** Matched exactly against subject_token. */
  subjectToken: string;
  /** Returned as access_token, opaque. */
  issuedToken: string;
  /** expires_in for this token; default 60 (what the seed STS answers). */
  lifetimeSeconds?: number;
}

/**
 * RFC 8705 section 3.1 confirmation: the mTLS listener (server.ts) hashes the
 * verified TLS client certificate and passes it here so the JWT carries `cnf`.
 */
export interface Confirmation {
  readonly 'x5t#S256': string;
}

export interface ExchangeContext {
  /** Set when the client authenticated (RFC 9068 section 2.2: `client_id`). */
  readonly client?: AuthenticatedClient | undefined;
  readonly confirmation?: Confirmation | undefined;
  /** RFC 9449 section 6.1: the thumbprint of the key the request's DPoP proof was signed with. */
  readonly dpopJkt?: string | undefined;
}

/**
 * RFC 8693 section 2.2.2 says invalid subject/actor tokens get `invalid_request`;
 * Google's STS (and the sidecar's tests) use `invalid_grant`. Configurable so the
 * client can be tested against both.
 */
export type RejectedTokenError = 'invalid_grant' | 'invalid_request';

export interface IssuedToken {
  readonly token: string;
  readonly issuedTokenType: IssuableTokenType;
  readonly expiresInSeconds: number;
  /** Granted scope tokens; echoed in the response when non-empty. */
  readonly scope: readonly string[];
  /** For logs and metrics: which path issued it and for whom (never the token). */
  readonly kind: 'static' | 'jwt';
  readonly subject?: string;
}

export interface ExchangerConfig {
  readonly issuer: string;
  readonly staticRules: readonly StaticRule[];
  readonly verifier: JwtVerifier;
  readonly signer: TokenSigner;
  readonly tokenLifetimeSeconds: number;
  readonly rejectedTokenError: RejectedTokenError;
}

export interface Exchanger {
  exchange(request: ExchangeRequest, context?: ExchangeContext): Promise<IssuedToken>;
}

export const DEFAULT_STATIC_LIFETIME_SECONDS = 60;

export function createExchanger(config: ExchangerConfig): Exchanger {
  const verify = async (token: string, tokenType: string, role: TokenRole): Promise<JWTPayload & { iss: string; sub: string }> => {
    if (!JWT_BEARING_TOKEN_TYPES.has(tokenType) || !looksLikeJwt(token)) {
      throw new OAuthError(
        config.rejectedTokenError,
        `${role} token is neither a known static token nor a JWT of an accepted ${role}_token_type`,
      );
    }
    try {
      return await config.verifier.verify(token, role);
    } catch (err) {
      if (err instanceof TokenRejectedError) {
        throw new OAuthError(err.transient ? 'temporarily_unavailable' : config.rejectedTokenError, err.message, { cause: err });
      }
      throw err;
    }
  };

  return {
    async exchange(request, context = {}) {
      const rule = config.staticRules.find((r) => r.subjectToken === request.subjectToken);
      if (rule !== undefined) {
        // The actor is verified even here, so a bad actor token cannot slip through on the static path.
        if (request.actor) await verify(request.actor.token, request.actor.tokenType, 'actor');
        // Opaque tokens are access tokens whatever was requested: issued_token_type must say what it is.
        return Object.freeze({
          token: rule.issuedToken,
          issuedTokenType: TOKEN_TYPE_ACCESS_TOKEN,
          expiresInSeconds: rule.lifetimeSeconds ?? DEFAULT_STATIC_LIFETIME_SECONDS,
          scope: request.scope,
          kind: 'static',
        });
      }

      const subject = await verify(request.subjectToken, request.subjectTokenType, 'subject');
      const actor = request.actor ? await verify(request.actor.token, request.actor.tokenType, 'actor') : undefined;
      const iat = Math.floor(Date.now() / 1000);
      const claims: JWTPayload = {
        iss: config.issuer,
        sub: subject.sub,
        ...audienceClaim(request),
        iat,
        exp: iat + config.tokenLifetimeSeconds,
        jti: randomUUID(),
        ...(request.scope.length > 0 ? { scope: request.scope.join(' ') } : {}),
        ...(context.client ? { client_id: context.client.clientId } : {}),
        ...actClaim(actor, subject),
        ...confirmationClaim(context),
      };
      // RFC 9068 section 2.1: JWT access tokens carry typ "at+jwt".
      const token = await config.signer.sign(claims, 'at+jwt');
      return Object.freeze({
        token,
        issuedTokenType: request.requestedTokenType,
        expiresInSeconds: config.tokenLifetimeSeconds,
        scope: request.scope,
        kind: 'jwt',
        subject: subject.sub,
      });
    },
  };
}

/** `cnf` (RFC 7800): the certificate (RFC 8705 3.1) and/or the DPoP key (RFC 9449 6.1) the token is bound to. */
function confirmationClaim(context: ExchangeContext): { cnf?: Record<string, string> } {
  const cnf: Record<string, string> = {};
  if (context.confirmation) cnf['x5t#S256'] = context.confirmation['x5t#S256'];
  if (context.dpopJkt) cnf['jkt'] = context.dpopJkt;
  return Object.keys(cnf).length > 0 ? { cnf } : {};
}

/**
 * RFC 8693 section 2.1: audience and resource both name targets; audience wins
 * when both are present. One value is a string, several an array (RFC 7519 4.1.3).
 */
function audienceClaim(request: ExchangeRequest): { aud?: string | string[] } {
  const targets = request.audience.length > 0 ? request.audience : request.resource;
  if (targets.length === 0) return {};
  return { aud: targets.length === 1 ? (targets[0] as string) : [...targets] };
}

/**
 * RFC 8693 section 4.1: `act` names the current actor; a delegation chain already
 * in the subject token nests beneath it as the prior actor.
 */
function actClaim(actor: (JWTPayload & { iss: string; sub: string }) | undefined, subject: JWTPayload): { act?: Record<string, unknown> } {
  const priorAct = isPlainObject(subject['act']) ? subject['act'] : undefined;
  if (actor === undefined) return priorAct ? { act: priorAct } : {};
  return { act: { sub: actor.sub, iss: actor.iss, ...(priorAct ? { act: priorAct } : {}) } };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

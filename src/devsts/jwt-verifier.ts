/**
 * Verifying JWT subject and actor tokens against configured trusted issuers
 * (RFC 8693 section 2.1 leaves validation to the STS; RFC 7523 section 3 lists the
 * checks we apply). The issuer is picked by the token's *unverified* `iss`, then
 * jose checks signature, issuer, audience and expiry against that issuer's keys.
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWSAlgorithm,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { quoteForDescription } from '../oauth/oauth-error.js';

interface TrustedIssuerBase {
  issuer: string;
  /** When set, the token's `aud` must contain (one of) these. */
  audience?: string | string[];
}
export type TrustedIssuer =
  | (TrustedIssuerBase & { jwks: JSONWebKeySet; jwksUrl?: undefined })
  | (TrustedIssuerBase & { jwksUrl: string; jwks?: undefined });

export type TokenRole = 'subject' | 'actor';

/**
 * Why a token was refused, in words safe to send to the client. `transient` marks
 * failures that are ours, not the token's (the issuer's JWKS could not be fetched).
 */
export class TokenRejectedError extends Error {
  readonly transient: boolean;
  constructor(description: string, options: { transient?: boolean; cause?: unknown } = {}) {
    super(description, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TokenRejectedError';
    this.transient = options.transient ?? false;
  }
}

export interface JwtVerifier {
  /** Resolves to the verified claims (with a non-empty `sub`), or throws TokenRejectedError. */
  verify(token: string, role: TokenRole): Promise<JWTPayload & { iss: string; sub: string }>;
}

/** Asymmetric algorithms only: a shared-secret HS256 subject token makes no sense against a JWKS. */
const ALLOWED_ALGORITHMS: JWSAlgorithm[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/** Small allowance for clock skew between the issuer and us. */
const CLOCK_TOLERANCE_SECONDS = 5;

/** Three base64url segments: the JWS compact serialisation (RFC 7515 section 7.1). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export function looksLikeJwt(token: string): boolean {
  return COMPACT_JWS.test(token);
}

interface IssuerEntry {
  readonly issuer: string;
  readonly audience: string | string[] | undefined;
  readonly keys: JWTVerifyGetKey;
}

export function createJwtVerifier(trustedIssuers: readonly TrustedIssuer[]): JwtVerifier {
  const byIssuer = new Map<string, IssuerEntry>();
  for (const trusted of trustedIssuers) {
    const keys =
      trusted.jwks !== undefined
        ? createLocalJWKSet(trusted.jwks)
        : // Built once so jose's cache, single in-flight fetch and cooldown apply across requests.
          createRemoteJWKSet(new URL(trusted.jwksUrl), { timeoutDuration: 5_000, cooldownDuration: 30_000 });
    byIssuer.set(trusted.issuer, { issuer: trusted.issuer, audience: trusted.audience, keys });
  }

  return {
    async verify(token, role) {
      const label = `${role} token`;
      if (!looksLikeJwt(token)) throw new TokenRejectedError(`${label} is not a JWT`);
      let unverifiedIssuer: unknown;
      try {
        unverifiedIssuer = decodeJwt(token).iss;
      } catch (err) {
        throw new TokenRejectedError(`${label} is not a well-formed JWT`, { cause: err });
      }
      if (typeof unverifiedIssuer !== 'string' || unverifiedIssuer === '') {
        throw new TokenRejectedError(`${label} has no 'iss' claim`);
      }
      const entry = byIssuer.get(unverifiedIssuer);
      if (entry === undefined) {
        throw new TokenRejectedError(`${label} issuer ${quoteForDescription(unverifiedIssuer)} is not trusted`);
      }
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, entry.keys, {
          issuer: entry.issuer,
          ...(entry.audience !== undefined ? { audience: entry.audience } : {}),
          // RFC 7523 section 3: exp is REQUIRED; sub names whom the issued token is for.
          requiredClaims: ['exp', 'sub'],
          algorithms: ALLOWED_ALGORITHMS,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
        }));
      } catch (err) {
        throw describeFailure(label, err);
      }
      if (typeof payload.sub !== 'string' || payload.sub === '') {
        throw new TokenRejectedError(`${label} has an empty 'sub' claim`);
      }
      return { ...payload, iss: entry.issuer, sub: payload.sub };
    },
  };
}

/** Map jose's error codes to our own words; jose's messages and payloads never reach the client. */
function describeFailure(label: string, err: unknown): TokenRejectedError {
  if (err instanceof errors.JWTExpired) return new TokenRejectedError(`${label} has expired`, { cause: err });
  if (err instanceof errors.JWTClaimValidationFailed) {
    const claim = err.claim;
    const what =
      err.reason === 'missing'
        ? `is missing the '${claim}' claim`
        : claim === 'nbf'
          ? 'is not yet valid'
          : `failed the '${claim}' claim check`;
    return new TokenRejectedError(`${label} ${what}`, { cause: err });
  }
  if (err instanceof errors.JOSEError) {
    switch (err.code) {
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        return new TokenRejectedError(`${label} signature verification failed`, { cause: err });
      case 'ERR_JWKS_NO_MATCHING_KEY':
      case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
        return new TokenRejectedError(`no single key of the trusted issuer matches the ${label} header`, { cause: err });
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
      case 'ERR_JOSE_NOT_SUPPORTED':
        return new TokenRejectedError(`${label} is signed with an algorithm that is not accepted`, { cause: err });
      case 'ERR_JWS_INVALID':
      case 'ERR_JWT_INVALID':
        return new TokenRejectedError(`${label} is not a well-formed JWT`, { cause: err });
      default:
        break;
    }
  }
  // Anything else (network error, timeout, bad JWKS document) is about fetching keys, not the token.
  return new TokenRejectedError(`could not load the trusted issuer's keys to verify the ${label}`, {
    transient: true,
    cause: err,
  });
}

/**
 * What of a token may be shown in a log line or on /status: a few public claims of a JWT,
 * decoded without verification (RFC 7519 4.1), never the token itself nor its signature.
 * An opaque token has none. Claim values pass through `scrub()`, so a JWT-shaped string
 * nested in a claim is not shown either.
 */
import { decodeJwt } from 'jose';
import { scrub } from './redact.js';

export interface PublicClaims {
  /** `iss` (RFC 7519 4.1.1). */
  readonly issuer?: string;
  /** `sub` (4.1.2). */
  readonly subject?: string;
  /** `aud` (4.1.3), always a list. */
  readonly audience?: readonly string[];
  /** `exp` (4.1.4) as an ISO time. */
  readonly expiresAt?: string;
  /** `cnf.x5t#S256` (RFC 8705 3.1): the certificate the token is bound to. */
  readonly boundThumbprint?: string;
  /** `cnf.jkt` (RFC 9449 6.1): the DPoP key the token is bound to. */
  readonly boundKeyThumbprint?: string;
}

/** The public claims of a compact JWS, or undefined when `value` is not one. */
export function publicClaims(value: string): PublicClaims | undefined {
  if (value.split('.').length !== 3) return undefined;
  let payload: Record<string, unknown>;
  try {
    payload = decodeJwt(value);
  } catch {
    return undefined;
  }
  const text = (v: unknown) => (typeof v === 'string' ? scrub(v, 256) : undefined);
  const aud = payload['aud'];
  const audience = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : undefined;
  const exp = payload['exp'];
  const cnf = payload['cnf'];
  const x5t = typeof cnf === 'object' && cnf !== null ? (cnf as Record<string, unknown>)['x5t#S256'] : undefined;
  const claims: { -readonly [K in keyof PublicClaims]: PublicClaims[K] } = {};
  if (text(payload['iss']) !== undefined) claims.issuer = text(payload['iss'])!;
  if (text(payload['sub']) !== undefined) claims.subject = text(payload['sub'])!;
  if (audience) claims.audience = audience.map((a) => scrub(a, 256));
  if (typeof exp === 'number' && Number.isFinite(exp) && Math.abs(exp) < 1e11) claims.expiresAt = new Date(exp * 1000).toISOString();
  // RFC 8705 3.1 (a certificate) or RFC 9449 6.1 (a DPoP key).
  const jkt = typeof cnf === 'object' && cnf !== null ? (cnf as Record<string, unknown>)['jkt'] : undefined;
  if (typeof x5t === 'string') claims.boundThumbprint = scrub(x5t, 128);
  if (typeof jkt === 'string') claims.boundKeyThumbprint = scrub(jkt, 128);
  return claims;
}

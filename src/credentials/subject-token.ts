/**
 * The ambient credential the sidecar exchanges. Wraps a SecretSource with what the
 * token cache needs: a digest to key on (never the token itself) and, for JWTs,
 * the token's own expiry so an expired subject token is never sent (RFC 7519 4.1.4).
 */
import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { SubjectTokenError } from '../errors.js';
import type { SecretSource } from './secret-source.js';

export interface SubjectToken {
  readonly value: string;
  readonly type: string;
  /** sha256 of the value, base64url: a cache-key component that reveals nothing. */
  readonly digest: string;
  /** Epoch ms from the JWT's `exp`, when the token is a JWT that has one. */
  readonly expiresAt: number | undefined;
}

export interface SubjectTokenProvider {
  /** Where the token comes from, safe to log. */
  readonly description: string;
  /** The current subject token, possibly expired: check with assertUsable() before sending it. */
  current(): SubjectToken;
  onChange(listener: () => void): void;
  close(): void;
}

export function describeToken(value: string, type: string): SubjectToken {
  return {
    value,
    type,
    digest: createHash('sha256').update(value).digest('base64url'),
    expiresAt: jwtExpiry(value),
  };
}

/** Epoch ms of a compact JWT's `exp`, or undefined for anything that is not a JWT with one. */
export function jwtExpiry(value: string): number | undefined {
  if (value.split('.').length !== 3) return undefined;
  try {
    const { exp } = decodeJwt(value);
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

export function createSubjectTokenProvider(source: SecretSource, type: string): SubjectTokenProvider {
  let cached: SubjectToken | undefined;
  source.onChange(() => {
    cached = undefined;
  });
  return {
    description: source.description,
    current() {
      const raw = source.current();
      if (!cached || cached.value !== raw) cached = describeToken(raw, type);
      return cached;
    },
    onChange: (listener) => source.onChange(listener),
    close: () => source.close(),
  };
}

/** A JWT subject token past its own `exp` is never sent: the STS would reject it anyway, and it leaks nothing to wait. */
export function assertUsable(token: SubjectToken, description: string, now = Date.now()): void {
  if (token.expiresAt !== undefined && token.expiresAt <= now) {
    throw new SubjectTokenError(
      'ERR_SUBJECT_TOKEN_EXPIRED',
      `the subject token from ${description} expired at ${new Date(token.expiresAt).toISOString()}; waiting for it to be rotated`,
    );
  }
}

/**
 * A compact JWT's header and claims read WITHOUT verifying its signature (RFC 7519 7.2 steps
 * 1-6 only): enough to say whether a token file holds a JWT at all and when it expires, or
 * to show an operator what an STS issued. Nothing here may be trusted for a decision about
 * access. A problem is described in our own words, never with the token's text.
 */

export type DecodedJwt =
  | { readonly ok: true; readonly header: Record<string, unknown>; readonly claims: Record<string, unknown> }
  | { readonly ok: false; readonly problem: string };

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** True when `value` has the shape of a compact JWS (three dot-separated base64url parts, the first `{"`). */
export function looksLikeJwt(value: string): boolean {
  const parts = value.split('.');
  return parts.length === 3 && parts.every((p) => BASE64URL.test(p)) && value.startsWith('eyJ');
}

export function decodeJwtUnverified(value: string): DecodedJwt {
  const parts = value.split('.');
  if (parts.length !== 3) {
    return { ok: false, problem: `is not a JWT: a compact JWT has three base64url parts separated by dots, this has ${parts.length}` };
  }
  if (!parts.every((p) => BASE64URL.test(p))) return { ok: false, problem: 'is not a JWT: a part is not base64url' };
  const header = jsonObject(parts[0]!);
  if (!header) return { ok: false, problem: 'is not a JWT: its header is not a base64url-encoded JSON object' };
  const claims = jsonObject(parts[1]!);
  if (!claims) return { ok: false, problem: 'is not a JWT: its payload is not a base64url-encoded JSON object' };
  return { ok: true, header, claims };
}

function jsonObject(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A NumericDate claim (RFC 7519 2) as epoch ms, or undefined when absent or not a number. */
export function numericDate(claims: Record<string, unknown>, name: 'exp' | 'nbf' | 'iat'): number | undefined {
  const v = claims[name];
  return typeof v === 'number' && Number.isFinite(v) ? v * 1000 : undefined;
}

/** "in 4m 10s" / "3h 2m ago": how far `at` is from `now`, for a person. */
export function relativeTime(at: number, now: number): string {
  const seconds = Math.round(Math.abs(at - now) / 1000);
  const units: Array<[number, string]> = [[86400, 'd'], [3600, 'h'], [60, 'm'], [1, 's']];
  const shown: string[] = [];
  let left = seconds;
  for (const [size, unit] of units) {
    if (left >= size && shown.length < 2) {
      shown.push(`${Math.floor(left / size)}${unit}`);
      left %= size;
    }
  }
  const span = shown.join(' ') || '0s';
  return at >= now ? `in ${span}` : `${span} ago`;
}

/**
 * Redaction shared by logs, error messages and admin pages. Tokens must never leave
 * the process except in the one header we inject, so anything we did not write
 * ourselves (an STS's error_description, an upstream's message) is scrubbed of
 * JWT-shaped strings and of the secrets we know about before it is shown.
 */
import type { SecretSource } from '../credentials/secret-source.js';

export const REDACTED = '[Redacted]';

/** Compact JWS/JWE: base64url header starting `eyJ` ({"...) then two or more dot-separated parts. */
const JWT_LIKE = /eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){2,4}/g;

/** Secrets currently in use (subject tokens, issued tokens, client secrets), scrubbed by value. */
const knownSecrets = new Set<string>();

export function registerSecret(value: string): void {
  // Very short values would scrub ordinary words; they are also not tokens worth the name.
  if (value.length >= 8) knownSecrets.add(value);
}

export function forgetSecret(value: string): void {
  knownSecrets.delete(value);
}

export function scrub(text: string, maxLength = 512): string {
  let out = text.replace(JWT_LIKE, REDACTED);
  for (const secret of knownSecrets) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  return out.length > maxLength ? `${out.slice(0, maxLength)}...` : out;
}

/** Keep the scrubber's list of known secrets in step with a rotating source. */
export function trackSecretSource(source: SecretSource): void {
  let current = source.current();
  registerSecret(current);
  source.onChange(() => {
    forgetSecret(current);
    current = source.current();
    registerSecret(current);
  });
}

/**
 * Redaction shared by logs, error messages and admin pages. Tokens must never leave
 * the process except in the one header we inject, so anything we did not write
 * ourselves (an STS's error_description, an upstream's message) is scrubbed before it
 * is shown.
 *
 * Two layers:
 *  - `scrub()` replaces JWT-shaped strings; it knows no secret, so it is safe anywhere;
 *  - a `Redactor`, one per sidecar (issue 10 item 23), also replaces the secrets that
 *    sidecar registered (subject and actor tokens, client secrets, issued tokens) in every
 *    form a peer may echo them: raw, percent-encoded, form-urlencoded, base64 and base64url
 *    (issue 10 item 15). A sidecar that closes takes its secrets with it.
 */
import type { SecretSource } from '../credentials/secret-source.js';

export const REDACTED = '[Redacted]';

/** Compact JWS/JWE: base64url header starting `eyJ` ({"...) then two or more dot-separated parts. */
const JWT_LIKE = /eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){2,4}/g;

/** Shorter values would scrub ordinary words; they are also not tokens worth the name. */
const MIN_SECRET_LENGTH = 8;

/** JWT-shaped strings replaced, then cut to `maxLength`. Knows no secret: see Redactor. */
export function scrub(text: string, maxLength = 512): string {
  return truncate(text.replace(JWT_LIKE, REDACTED), maxLength);
}

export interface Redactor {
  /**
   * `scrub()` plus every registered secret in each of its encoded forms. `also` names
   * secrets for this call only (e.g. the ones a request just sent, which may have rotated
   * out of the registry by the time the reply that echoes them arrives).
   */
  scrub(text: string, maxLength?: number, also?: ReadonlyArray<string | undefined>): string;
  /** Counted: a value registered twice (two routes holding one token) stays until forgotten twice. */
  register(secret: string): void;
  forget(secret: string): void;
  /**
   * Keep a rotating source's value registered, with the values `derived` from it (e.g. a
   * client_secret_basic credential). The previous value stays registered until the next
   * rotation: an exchange sent with it may still be answered.
   */
  track(source: SecretSource, derived?: (value: string) => readonly string[]): void;
}

export function createRedactor(): Redactor {
  const registered = new Map<string, { count: number; readonly forms: readonly string[] }>();
  /** Every encoded form of every registered secret, longest first; rebuilt after a change. */
  let compiled: readonly string[] | undefined;

  const register = (secret: string) => {
    if (secret.length < MIN_SECRET_LENGTH) return;
    const known = registered.get(secret);
    if (known) known.count += 1;
    else registered.set(secret, { count: 1, forms: encodedForms(secret) });
    compiled = undefined;
  };
  const forget = (secret: string) => {
    const known = registered.get(secret);
    if (!known) return;
    if (--known.count === 0) registered.delete(secret);
    compiled = undefined;
  };
  const patterns = (also: ReadonlyArray<string | undefined>): readonly string[] => {
    compiled ??= longestFirst([...registered.values()].flatMap((r) => r.forms));
    const extra = also.filter((s): s is string => s !== undefined && s.length >= MIN_SECRET_LENGTH);
    return extra.length === 0 ? compiled : longestFirst([...compiled, ...extra.flatMap(encodedForms)]);
  };

  return {
    register,
    forget,
    scrub(text, maxLength = 512, also = []) {
      let out = text.replace(JWT_LIKE, REDACTED);
      // Longest first: a form that contains a shorter one is replaced whole.
      for (const pattern of patterns(also)) {
        if (out.includes(pattern)) out = out.split(pattern).join(REDACTED);
      }
      return truncate(out, maxLength);
    },
    track(source, derived = () => []) {
      const valuesOf = (value: string) => [value, ...derived(value)];
      let current = valuesOf(source.current());
      let previous: string[] = [];
      current.forEach(register);
      source.onChange(() => {
        previous.forEach(forget);
        previous = current;
        current = valuesOf(source.current());
        current.forEach(register);
      });
    },
  };
}

/**
 * The forms in which a peer may echo a secret: as sent in a query or form body
 * (encodeURIComponent, application/x-www-form-urlencoded with `+` for space, either hex
 * case), and base64 / base64url of each. A secret inside a larger base64 blob (an
 * `Authorization: Basic` credential, RFC 6749 2.3.1, or an encoded JSON document) is
 * encoded at one of three byte alignments, so the characters that depend on the secret
 * alone are registered for each alignment too.
 */
export function encodedForms(secret: string): string[] {
  const texts = new Set([secret, encodeURIComponent(secret), formUrlEncode(secret)]);
  for (const text of [...texts]) texts.add(text.replace(/%[0-9A-F]{2}/g, (hex) => hex.toLowerCase()));
  const forms = new Set<string>();
  for (const text of texts) {
    const bytes = Buffer.from(text, 'utf8');
    const base64 = bytes.toString('base64');
    forms.add(text).add(base64).add(base64.replace(/=+$/, '')).add(bytes.toString('base64url'));
    for (const core of alignedBase64Cores(bytes)) forms.add(core).add(core.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return [...forms].filter((form) => form.length >= MIN_SECRET_LENGTH);
}

/**
 * For each offset k in 0..2 bytes, the base64 characters of (k bytes, secret) whose six
 * bits all come from the secret: character i covers bits [6i, 6i+6), the secret bits
 * [8k, 8(k+n)).
 */
function alignedBase64Cores(bytes: Buffer): string[] {
  const cores: string[] = [];
  for (let k = 0; k < 3; k++) {
    const encoded = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64');
    cores.push(encoded.slice(Math.ceil((8 * k) / 6), Math.floor((8 * (k + bytes.length)) / 6)));
  }
  return cores;
}

/** WHATWG application/x-www-form-urlencoded serialization of one value (`+` for space). */
function formUrlEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}

function longestFirst(forms: readonly string[]): string[] {
  return [...new Set(forms)].sort((a, b) => b.length - a.length);
}

function truncate(text: string, maxLength: number): string {
  return text.length > maxLength ? `${text.slice(0, maxLength)}...` : text;
}

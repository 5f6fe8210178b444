/**
 * The `DPoP-Nonce` values servers handed out (RFC 9449 sections 8 and 9), one per origin:
 * the next proof to that origin carries it. Bounded: a forward proxy may talk to many
 * origins, and each entry is a value a server chose (its size is capped too).
 */

/** Section 8.1: a nonce is an opaque string of visible ASCII (NQCHAR). */
const NONCE = /^[\x21\x23-\x5b\x5d-\x7e]{1,512}$/;

export class NonceStore {
  readonly #byOrigin = new Map<string, string>();
  readonly #maxOrigins: number;

  constructor(maxOrigins = 256) {
    this.#maxOrigins = maxOrigins;
  }

  get(origin: string): string | undefined {
    return this.#byOrigin.get(origin);
  }

  /** A `DPoP-Nonce` header from `origin`; false when it is absent or not a valid nonce. */
  update(origin: string, header: string | string[] | undefined): boolean {
    const value = Array.isArray(header) ? header[header.length - 1] : header;
    if (value === undefined || !NONCE.test(value)) return false;
    this.#byOrigin.delete(origin);
    this.#byOrigin.set(origin, value);
    // Least recently updated first out (Map keeps insertion order).
    if (this.#byOrigin.size > this.#maxOrigins) this.#byOrigin.delete(this.#byOrigin.keys().next().value!);
    return true;
  }

  get size(): number {
    return this.#byOrigin.size;
  }
}

/**
 * Section 9: a resource server asks for a nonce with a 401 whose `WWW-Authenticate: DPoP`
 * challenge has `error="use_dpop_nonce"`, and the nonce in `DPoP-Nonce`.
 */
export function demandsNonce(wwwAuthenticate: string | string[] | undefined): boolean {
  const values = Array.isArray(wwwAuthenticate) ? wwwAuthenticate : wwwAuthenticate === undefined ? [] : [wwwAuthenticate];
  return values.some((v) => /(^|,)\s*DPoP\b/i.test(v) && /\berror\s*=\s*"?use_dpop_nonce"?/i.test(v));
}

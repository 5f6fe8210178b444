/**
 * Leaf certificates for intercepted hosts, issued by the interception CA and kept as ready
 * TLS contexts: one issuance (about 1 ms) per host and lifetime, not one per tunnel.
 * The hosts are those of routes with `intercept: true` (a CONNECT only reaches interception
 * after matching one), so the map is bounded by the configuration.
 */
import { createSecureContext, type SecureContext } from 'node:tls';
import type { CertificateAuthority } from '../../pki/certificates.js';

export interface LeafCacheOptions {
  readonly validitySeconds: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

interface CachedLeaf {
  readonly context: SecureContext;
  /** Re-issue from this time on, well before the leaf expires. */
  readonly renewAt: number;
}

export class LeafCertificateCache {
  readonly #ca: CertificateAuthority;
  readonly #validityMs: number;
  readonly #now: () => number;
  readonly #caNotAfter: number;
  readonly #leaves = new Map<string, CachedLeaf>();
  #issued = 0;

  constructor(ca: CertificateAuthority, options: LeafCacheOptions) {
    this.#ca = ca;
    this.#validityMs = options.validitySeconds * 1000;
    this.#now = options.now ?? Date.now;
    this.#caNotAfter = Date.parse(ca.certificate.validTo);
  }

  /** How many leaves were issued so far (tests check reuse and renewal). */
  get issued(): number {
    return this.#issued;
  }

  /** A TLS context presenting a leaf for `hostname` (a DNS name or an IP literal without brackets). */
  contextFor(hostname: string): SecureContext {
    const now = this.#now();
    const cached = this.#leaves.get(hostname);
    if (cached && now < cached.renewAt) return cached.context;
    // Never outlive the CA: a client would reject the chain anyway.
    const notAfter = Math.min(now + this.#validityMs, this.#caNotAfter);
    const leaf = this.#ca.issue({ commonName: hostname, subjectAltNames: [hostname], usage: 'server', notAfter: new Date(notAfter) });
    this.#issued += 1;
    // The CA certificate follows the leaf so a client trusting only a root above a loaded
    // intermediate CA can still build the chain; for a self-signed CA it is harmless.
    const context = createSecureContext({ cert: leaf.certPem + this.#ca.certPem, key: leaf.keyPem });
    this.#leaves.set(hostname, { context, renewAt: now + (notAfter - now) * 0.75 });
    return context;
  }
}

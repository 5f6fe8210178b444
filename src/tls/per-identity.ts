/**
 * One connection pool per identity generation.
 *
 * A certificate rotation must reach new connections only, and a token bound to the new
 * certificate must never travel on a keep-alive connection that presented the old one
 * (the upstream compares `cnf.x5t#S256` with *that* connection's certificate). So each
 * generation gets its own pool; a request dispatches on the pool of the generation its
 * token is bound to. Superseded pools are closed gracefully after a grace period long
 * enough for requests that took their token just before the rotation.
 */
import type { IdentityGeneration } from './identity.js';

export interface Closable {
  close(): Promise<void>;
}

export class PerIdentity<D extends Closable> {
  readonly #create: (identity: IdentityGeneration | undefined) => D;
  readonly #graceMs: number;
  // Keyed by the generation object itself: two identities loaded separately may both be
  // generation 1, and must never share a connection.
  readonly #byGeneration = new Map<IdentityGeneration | undefined, D>();
  readonly #retiring = new Map<IdentityGeneration | undefined, NodeJS.Timeout>();
  #newest = 0;
  #closed = false;

  constructor(create: (identity: IdentityGeneration | undefined) => D, graceMs: number) {
    this.#create = create;
    this.#graceMs = graceMs;
  }

  get(identity: IdentityGeneration | undefined): D {
    const existing = this.#byGeneration.get(identity);
    if (existing) return existing;
    const created = this.#create(identity);
    this.#byGeneration.set(identity, created);
    const id = identity?.id ?? 0;
    if (id > this.#newest) this.#newest = id;
    if (!this.#closed) for (const other of this.#byGeneration.keys()) if ((other?.id ?? 0) < this.#newest) this.#retire(other);
    return created;
  }

  #retire(id: IdentityGeneration | undefined): void {
    if (this.#retiring.has(id)) return;
    const timer = setTimeout(() => {
      this.#retiring.delete(id);
      const d = this.#byGeneration.get(id);
      this.#byGeneration.delete(id);
      // close() lets requests already dispatched finish; only new dispatches are refused.
      void d?.close().catch(() => {});
    }, this.#graceMs);
    timer.unref();
    this.#retiring.set(id, timer);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#retiring.values()) clearTimeout(t);
    this.#retiring.clear();
    const all = [...this.#byGeneration.values()];
    this.#byGeneration.clear();
    await Promise.all(all.map((d) => d.close().catch(() => {})));
  }
}

/**
 * Parts a configuration reload keeps when their settings did not change (issue 13): the
 * workload identity (its generations are what cached tokens are bound to, RFC 8705 3) and a
 * generated interception CA (apps trust its file; a new one would break every intercepted
 * call). Each part is opened with its own resources; a generation that no longer claims it
 * closes it when that generation retires.
 */
import { Resources, type Deferrer } from './resources.js';

interface Kept {
  readonly settings: string;
  readonly value: unknown;
  readonly resources: Resources;
}

/** One generation's view: `keep` hands back the previous generation's part when its settings match. */
export interface CarryOver {
  keep<T>(name: string, settings: unknown, open: (resources: Deferrer) => Promise<T>): Promise<T>;
}

export class CarriedParts implements CarryOver {
  readonly #previous: ReadonlyMap<string, Kept>;
  readonly #parts = new Map<string, Kept>();
  /** Opened by this generation (closed if the generation is never committed). */
  readonly #opened: Kept[] = [];

  constructor(previous?: CarriedParts) {
    this.#previous = previous ? previous.#parts : new Map();
  }

  async keep<T>(name: string, settings: unknown, open: (resources: Deferrer) => Promise<T>): Promise<T> {
    const key = JSON.stringify(settings) ?? 'undefined';
    const previous = this.#previous.get(name);
    if (previous && previous.settings === key) {
      this.#parts.set(name, previous);
      return previous.value as T;
    }
    const resources = new Resources();
    try {
      const value = await open(resources);
      const kept = { settings: key, value, resources };
      this.#parts.set(name, kept);
      this.#opened.push(kept);
      return value;
    } catch (err) {
      await resources.close();
      throw err;
    }
  }

  /** The build failed: close what this generation opened; what it took over stays with its owner. */
  async abort(): Promise<void> {
    await Promise.all(this.#opened.map((k) => k.resources.close()));
  }

  /** This generation retires in favour of `next`: close the parts `next` did not take over. */
  async retire(next: CarriedParts | undefined): Promise<void> {
    const taken = new Set(next ? next.#parts.values() : []);
    await Promise.all([...this.#parts.values()].filter((k) => !taken.has(k)).map((k) => k.resources.close()));
  }
}

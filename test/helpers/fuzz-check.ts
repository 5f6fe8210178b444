/**
 * The fuzz test's invariant (issue 10): the token reaches an upstream only when the request,
 * as that upstream parsed it, belongs to the route the sidecar matched. Each upstream is a
 * real loopback server serving one route; it reports every request it parsed to observe(),
 * which checks it against the request the generator sent (found by its X-Fuzz-Id).
 *
 * "As the upstream parsed it" uses two readers, as common servers do:
 *   - whatwg: `new URL()` normalisation, which removes `.` and `..` segments, their `%2e`
 *     forms too, and reads `\` as `/` (WHATWG URL, path state);
 *   - strict: first percent-decodes `%2f` and `%5c` and turns `\` into `/`, then the same
 *     (frameworks that decode the path before routing, e.g. some servlet containers).
 */
import type { FuzzMode, FuzzRequest, FuzzRouteSpec } from './fuzz-generate.js';

export type PathReader = (target: string) => string;

/** Origin-form target -> path; `http://x` + target so a leading `//` stays a path, not an authority. */
function pathnameOf(target: string): string {
  const t = target.startsWith('/') ? target : `/${target}`;
  try {
    return new URL(`http://x${t}`).pathname;
  } catch {
    return t.split(/[?#]/, 1)[0]!;
  }
}

export const PATH_READERS: Readonly<Record<string, PathReader>> = {
  whatwg: pathnameOf,
  strict: (target) => {
    const cut = target.search(/[?#]/);
    const path = cut === -1 ? target : target.slice(0, cut);
    return pathnameOf(path.replace(/%2f|%5c/gi, '/').replace(/\\/g, '/'));
  },
};

/** True when `path` is `scope` or below it on a segment boundary. */
export function underScope(scope: string, path: string): boolean {
  if (scope === '/' || scope === '' || path === scope) return true;
  return path.startsWith(scope.endsWith('/') ? scope : `${scope}/`);
}

/** The path space a route's upstream may be asked for: base path + pathPrefix. */
export function scopeOf(route: FuzzRouteSpec): string {
  return route.base + (route.pathPrefix === '/' ? '' : route.pathPrefix) || '/';
}

/** A Host value or authority -> the host name it names (lower case, no port, no trailing dot). */
export function hostName(value: string): string {
  let v = value.trim().toLowerCase();
  v = v.slice(v.lastIndexOf('@') + 1);
  if (v.startsWith('[')) v = v.slice(0, v.indexOf(']') + 1);
  else if (v.includes(':')) v = v.slice(0, v.lastIndexOf(':'));
  return v.endsWith('.') ? v.slice(0, -1) : v;
}

/**
 * The host a request names, for the route the sidecar must match: the CONNECT authority in a
 * tunnel, the target's authority in absolute-form (RFC 9112 3.2.2: Host is then ignored),
 * else the (first) Host line. Undefined on a dedicated listener: there the port is the route.
 */
export function namedHost(req: FuzzRequest): string | undefined {
  const { session } = req;
  if (session.mode === 'dedicated') return undefined;
  if (session.connectTo !== undefined) return hostName(session.connectTo);
  const absolute = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(req.target);
  if (absolute) return hostName(absolute[1]!);
  return req.hosts[0] === undefined ? undefined : hostName(req.hosts[0]);
}

/** What an upstream parsed, as it reports it. */
export interface UpstreamObservation {
  /** The route this upstream serves; undefined for the decoy (no route names it). */
  readonly route: FuzzRouteSpec | undefined;
  readonly id: string | undefined;
  readonly method: string;
  readonly url: string;
  readonly host: string | undefined;
  /** Routes whose token appeared anywhere in the request head. */
  readonly tokenRoutes: readonly string[];
}

export type ViolationClass =
  | 'path-escape:whatwg'
  | 'path-escape:strict'
  | 'other-host'
  | 'preserve-host'
  | 'trace'
  | 'wrong-route-token'
  | 'unrouted-destination'
  | 'unattributed'
  | 'bypass';

/** Why each class is an escape, for the report. */
export const VIOLATION_MEANING: Readonly<Record<ViolationClass, string>> = {
  'path-escape:whatwg': 'token sent with a path that, normalised as new URL() does, leaves the route\'s base path + pathPrefix',
  'path-escape:strict': 'token sent with a path that leaves the route once %2f/%5c/\\ are read as "/" and dot-segments removed',
  'other-host': 'token sent for a request that names a host other than the route\'s',
  'preserve-host': 'preserveHost route sent a Host header naming another virtual host than the route\'s host, with the token',
  trace: 'TRACE forwarded with the token (RFC 9110 section 9.3.8: TRACE must not carry credentials)',
  'wrong-route-token': 'an upstream received the token of a route it does not serve',
  'unrouted-destination': 'a destination no route names received a token',
  unattributed: 'an upstream parsed a request with the token that the app never sent as such (smuggled or split)',
  bypass: 'a route\'s upstream parsed an app request that did not go through the route (no token, outside routing)',
};

export interface ViolationExample {
  readonly id: string | undefined;
  /** An earlier request on the same connection that asked for an Upgrade (what a bypass follows). */
  readonly upgradeBefore: { readonly id: string; readonly request: string } | undefined;
  readonly mode: FuzzMode | undefined;
  readonly entry: string;
  readonly request: string;
  readonly upstream: string;
  readonly detail: string;
}

export interface CheckSummary {
  readonly violations: ReadonlyMap<ViolationClass, { count: number; examples: ViolationExample[] }>;
  /** Requests that reached a route's upstream with its token, per mode. */
  readonly forwardedWithToken: Readonly<Record<string, number>>;
  readonly observed: number;
  /** Requests naming two different hosts in two Host lines that got a token (RFC 9112 3.2 wants 400). */
  readonly conflictingHostLinesWithToken: number;
}

const MAX_EXAMPLES = 5;
/** Generated requests remembered for matching, oldest dropped first (bounds a long bench run). */
const REMEMBERED = 50_000;

export class FuzzChecker {
  readonly #sent = new Map<string, FuzzRequest>();
  readonly #upgradeBefore = new Map<string, FuzzRequest>();
  readonly #violations = new Map<ViolationClass, { count: number; examples: ViolationExample[] }>();
  readonly #forwarded: Record<string, number> = {};
  #observed = 0;
  #conflicting = 0;

  /**
   * Called before the request's bytes are written, with the last request on the same
   * connection that asked for an Upgrade, if any (the sidecar may have spliced the connection).
   */
  sent(req: FuzzRequest, upgradeBefore?: FuzzRequest): void {
    this.#sent.set(req.id, req);
    if (upgradeBefore) this.#upgradeBefore.set(req.id, upgradeBefore);
    if (this.#sent.size > REMEMBERED) {
      const oldest = this.#sent.keys().next().value!;
      this.#sent.delete(oldest);
      this.#upgradeBefore.delete(oldest);
    }
  }

  observe(o: UpstreamObservation): void {
    this.#observed += 1;
    const req = o.id === undefined ? undefined : this.#sent.get(o.id);
    const flag = (cls: ViolationClass, detail: string) => this.#flag(cls, req, o, detail);
    if (!o.route) {
      if (o.tokenRoutes.length) flag('unrouted-destination', `tokens of ${o.tokenRoutes.join(', ')}`);
      return;
    }
    const route = o.route;
    const foreign = o.tokenRoutes.filter((r) => r !== route.name);
    if (foreign.length) flag('wrong-route-token', `tokens of ${foreign.join(', ')} at the upstream of ${route.name}`);
    if (!o.tokenRoutes.includes(route.name)) {
      if (req || o.id !== undefined) flag('bypass', 'no token: the request did not go through the route');
      return;
    }
    if (!req) return flag('unattributed', `X-Fuzz-Id ${o.id ?? '(none)'} was never sent as a request`);
    this.#forwarded[req.session.mode] = (this.#forwarded[req.session.mode] ?? 0) + 1;
    for (const [name, read] of Object.entries(PATH_READERS)) {
      const path = read(o.url);
      if (!underScope(scopeOf(route), path)) flag(`path-escape:${name}` as ViolationClass, `${name} reads "${path}", outside "${scopeOf(route)}"`);
    }
    const named = namedHost(req);
    if (named !== undefined && named !== route.host) flag('other-host', `request names "${named}", route host is "${route.host}"`);
    if (route.preserveHost && hostName(o.host ?? '') !== route.host) flag('preserve-host', `Host sent upstream "${o.host ?? ''}", route host "${route.host}"`);
    if (o.method === 'TRACE') flag('trace', 'TRACE carried the token');
    if (req.hosts.length > 1 && new Set(req.hosts.map(hostName)).size > 1) this.#conflicting += 1;
  }

  #flag(cls: ViolationClass, req: FuzzRequest | undefined, o: UpstreamObservation, detail: string): void {
    let entry = this.#violations.get(cls);
    if (!entry) this.#violations.set(cls, (entry = { count: 0, examples: [] }));
    entry.count += 1;
    if (entry.examples.length >= MAX_EXAMPLES) return;
    const s = req?.session;
    const upgrade = req ? this.#upgradeBefore.get(req.id) : undefined;
    entry.examples.push({
      id: o.id,
      upgradeBefore: upgrade ? { id: upgrade.id, request: upgrade.bytes.toString('latin1').slice(0, 400) } : undefined,
      mode: s?.mode,
      entry: !s ? 'unknown' : s.connectTo ? `CONNECT ${s.connectTo}${s.mode === 'intercept' ? ` + TLS (SNI ${s.sni})` : ''}` : `${s.listener} listener`,
      request: req ? req.bytes.toString('latin1').slice(0, 400) : '(not sent by the generator)',
      upstream: `${o.route?.name ?? 'decoy'} upstream parsed ${o.method} ${JSON.stringify(o.url)} Host ${JSON.stringify(o.host ?? null)}`,
      detail,
    });
  }

  summary(): CheckSummary {
    return {
      violations: this.#violations,
      forwardedWithToken: { ...this.#forwarded },
      observed: this.#observed,
      conflictingHostLinesWithToken: this.#conflicting,
    };
  }
}

/** Human-readable lines: one per class, then its examples with what to replay. */
export function describeViolations(summary: CheckSummary, seed: number): string[] {
  const lines: string[] = [];
  for (const [cls, { count, examples }] of summary.violations) {
    lines.push(`${cls}: ${count} request(s): ${VIOLATION_MEANING[cls]}`);
    for (const e of examples) {
      lines.push(`  id ${e.id ?? '?'} (${e.mode ?? '?'}, ${e.entry}): ${e.detail}`);
      if (e.upgradeBefore) lines.push(`    after, on the same connection, ${e.upgradeBefore.id}: ${JSON.stringify(e.upgradeBefore.request)}`);
      lines.push(`    sent: ${JSON.stringify(e.request)}`);
      lines.push(`    ${e.upstream}`);
      const replay = e.upgradeBefore ? `${e.upgradeBefore.id}+${e.id}` : e.id;
      if (e.id && /^\d+\.\d+$/.test(e.id)) lines.push(`    replay: FUZZ_SEED=${seed} FUZZ_REPLAY=${replay} node --test dist/test/fuzz-front.test.js`);
    }
  }
  return lines;
}

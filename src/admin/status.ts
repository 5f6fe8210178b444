/**
 * /status (issue 13): what the sidecar is doing, for a person or a script: version, config
 * generation, listeners, routes with their token state, the workload identity, each subject
 * token's source and public claims, each STS profile's last result.
 *
 * Never a secret: tokens are described by their public JWT claims (log/token-claims.ts),
 * sources by where they are read from, the identity by its certificate; no key, no client
 * secret, no token value is read into the report.
 */
import { effectiveBinding, stsProfileConfigs } from '../sts/profiles.js';
import type { RouteTokenStatus } from '../cache/token-provider.js';
import { DEFAULT_STS_PROFILE, type Config } from '../config/schema.js';
import { publicClaims } from '../log/token-claims.js';
import type { IdentityGeneration } from '../tls/identity.js';
import { VERSION } from '../version.js';
import type { StsResult } from './sts-results.js';

export interface ConfigInfo {
  /** 1 for the config the sidecar started with, +1 per applied reload. */
  readonly generation: number;
  readonly file?: string | undefined;
  /** ISO time the current generation was applied. */
  readonly loadedAt: string;
}

export interface ListenerInfo {
  /** proxy | route | endpoint | admin */
  readonly kind: string;
  readonly name: string;
  readonly url: string;
}

/** A subject token source: named by its config key; its value is read only to decode claims. */
export interface SubjectTokenInfo {
  readonly name: string;
  readonly description: string;
  current(): { readonly value: string };
}

export interface StatusSources {
  readonly config: () => Config;
  readonly configInfo: () => ConfigInfo;
  readonly listeners: () => readonly ListenerInfo[];
  readonly tokenStatus: () => RouteTokenStatus[];
  readonly identity: () => IdentityGeneration | undefined;
  readonly subjectTokens: () => readonly SubjectTokenInfo[];
  readonly stsResults: () => Readonly<Record<string, StsResult>>;
  readonly accepting: () => boolean;
  /** The DPoP key routes with `binding: dpop` prove (issue 16): its public facts only. */
  readonly dpopKey?: () => { readonly algorithm: string; readonly thumbprint: string } | undefined;
}

export interface StatusReport {
  readonly version: string;
  readonly ready: boolean;
  readonly shuttingDown: boolean;
  readonly config: ConfigInfo;
  readonly listeners: readonly ListenerInfo[];
  readonly routes: readonly RouteReport[];
  readonly identity: IdentityReport | null;
  /** The DPoP key's algorithm and JWK thumbprint (RFC 7638), when a route uses it. */
  readonly dpopKey: { readonly algorithm: string; readonly thumbprint: string } | null;
  readonly subjectTokens: readonly SubjectTokenReport[];
  readonly sts: Readonly<Record<string, { readonly url: string | null; readonly lastResult: StsResult | null }>>;
}

export interface RouteReport {
  readonly name: string;
  readonly match: { readonly host: string | null; readonly pathPrefix: string; readonly listen: string | null };
  readonly upstream: string | null;
  readonly upstreamProtocol: string;
  readonly lazy: boolean;
  readonly sts: string;
  /** How the route's tokens are bound, its STS profile's `binding` included: `dpop` (RFC 9449), else as the STS binds them (`auto`). */
  readonly binding: string;
  readonly token: {
    readonly valid: boolean;
    readonly expiresInSeconds: number | null;
    readonly refreshing: boolean;
    readonly consecutiveFailures: number;
    readonly lastErrorCode: string | null;
    readonly boundThumbprint: string | null;
    /** The DPoP key's JWK thumbprint (RFC 7638) the token is bound to. */
    readonly boundKeyThumbprint: string | null;
    readonly issuer: string | null;
    readonly subject: string | null;
    readonly audience: readonly string[] | null;
  };
}

export interface IdentityReport {
  readonly subject: string;
  readonly subjectAltNames: readonly string[];
  readonly notAfter: string;
  readonly thumbprint: string;
  readonly generation: number;
}

export interface SubjectTokenReport {
  readonly name: string;
  readonly source: string;
  readonly exp: string | null;
  readonly aud: readonly string[] | null;
  readonly iss: string | null;
  readonly sub: string | null;
}

export function statusReport(s: StatusSources): StatusReport {
  const config = s.config();
  const tokens = new Map(s.tokenStatus().map((t) => [t.route, t]));
  const routes = config.routes.map((r) => routeReport(r, effectiveBinding(config, r).binding, tokens.get(r.name)));
  const accepting = s.accepting();
  const results = s.stsResults();
  const profiles = new Set([DEFAULT_STS_PROFILE, ...routes.map((r) => r.sts), ...Object.keys(results)]);
  const urls = new Map(stsProfileConfigs(config).map((p) => [p.name, `${p.sts.url.origin}${p.sts.url.pathname}`]));
  const dpopKey = s.dpopKey?.();
  return {
    version: VERSION,
    ready: accepting && routes.every((r) => r.lazy || r.token.valid),
    shuttingDown: !accepting,
    config: s.configInfo(),
    listeners: s.listeners(),
    routes,
    identity: identityReport(s.identity()),
    dpopKey: dpopKey ? { algorithm: dpopKey.algorithm, thumbprint: dpopKey.thumbprint } : null,
    subjectTokens: s.subjectTokens().map(subjectTokenReport),
    sts: Object.fromEntries(
      [...profiles].sort().map((name) => [name, { url: urls.get(name) ?? null, lastResult: results[name] ?? null }]),
    ),
  };
}

function routeReport(r: Config['routes'][number], binding: string, t: RouteTokenStatus | undefined): RouteReport {
  return {
    name: r.name,
    match: { host: r.host ?? null, pathPrefix: r.pathPrefix, listen: r.listen ? `${r.listen.host}:${r.listen.port}` : null },
    // Origin and path only: a query string is no business of a status page.
    upstream: r.upstream ? `${r.upstream.origin}${r.upstream.pathname === '/' ? '' : r.upstream.pathname}` : null,
    upstreamProtocol: r.upstreamProtocol,
    lazy: r.lazy,
    sts: r.sts,
    binding,
    token: {
      valid: t?.valid ?? false,
      expiresInSeconds: t?.expiresInSeconds === undefined ? null : Math.floor(t.expiresInSeconds),
      refreshing: t?.refreshing ?? false,
      consecutiveFailures: t?.consecutiveFailures ?? 0,
      lastErrorCode: t?.lastErrorCode ?? null,
      boundThumbprint: t?.boundThumbprint ?? null,
      boundKeyThumbprint: t?.boundKeyThumbprint ?? null,
      issuer: t?.issuer ?? null,
      subject: t?.subject ?? null,
      audience: t?.audience ?? null,
    },
  };
}

function identityReport(g: IdentityGeneration | undefined): IdentityReport | null {
  if (!g) return null;
  return {
    subject: g.leaf.subject.replace(/\n/g, ', '),
    // Node writes "DNS:a, URI:spiffe://..."; a comma inside a name is escaped in quotes, rare enough to keep simple.
    subjectAltNames: g.leaf.subjectAltName ? g.leaf.subjectAltName.split(/,\s*/) : [],
    notAfter: g.notAfter.toISOString(),
    thumbprint: g.thumbprint,
    generation: g.id,
  };
}

function subjectTokenReport(t: SubjectTokenInfo): SubjectTokenReport {
  let claims;
  try {
    claims = publicClaims(t.current().value);
  } catch {
    claims = undefined; // a source that cannot be read now still shows where it reads from
  }
  return {
    name: t.name,
    source: t.description,
    exp: claims?.expiresAt ?? null,
    aud: claims?.audience ?? null,
    iss: claims?.issuer ?? null,
    sub: claims?.subject ?? null,
  };
}

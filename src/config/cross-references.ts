/**
 * The rules of the configuration that span several keys: listeners stay on loopback unless
 * allowed and never share an address, route names and endpoint references exist, token-only
 * routes are reachable, interception has what it needs. Run by the schema after (and even
 * when) single fields fail, so one check-config run reports every problem.
 */
import { isIP } from 'node:net';
import type { z } from 'zod';
import type { ListenAddress } from '../http/listen-address.js';
import { checkProfileBinding, checkRouteBindings, type BindingSettings, type ProfileLookup } from './dpop-schema.js';

/** The name the top-level `sts` goes by in `routes[].sts`, logs and /status (issue 13). */
export const DEFAULT_STS_PROFILE = 'default';

function isAddress(v: unknown): v is ListenAddress {
  return typeof v === 'object' && v !== null && typeof (v as ListenAddress).port === 'number';
}

export function checkCrossReferences(c: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const proxySection = c['proxy'] as { listen?: unknown; allowNonLoopback?: unknown } | undefined;
  const proxy = proxySection?.listen;
  const remoteAllowed = proxySection?.allowNonLoopback === true;
  const checkProxyListen = (listen: unknown, path: PropertyKey[]) => {
    if (isAddress(listen) && !remoteAllowed && !isLoopbackHost(listen.host)) {
      ctx.addIssue({
        code: 'custom',
        path,
        message: `${listen.host} is not a loopback address: requests from other hosts would leave with this workload's tokens; bind 127.0.0.1, or set proxy.allowNonLoopback: true`,
      });
    }
  };
  checkProxyListen(proxy, ['proxy', 'listen']);
  const admin = (c['admin'] as { listen?: unknown } | undefined)?.listen;
  const listens = new Map<string, string>();
  if (isAddress(proxy)) listens.set(addressKey(proxy), 'proxy.listen');
  if (isAddress(admin) && admin.port !== 0) {
    const other = listens.get(addressKey(admin));
    if (other) ctx.addIssue({ code: 'custom', path: ['admin', 'listen'], message: `is the same address as ${other}` });
    listens.set(addressKey(admin), 'admin.listen');
  }
  checkStsProfiles(c, ctx);
  const forward = c['forward'] as { ca?: unknown; caCertOut?: unknown } | undefined;
  if (forward?.ca !== undefined && forward.caCertOut !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['forward', 'caCertOut'],
      message: 'is only for a generated CA; with forward.ca the apps trust forward.ca.cert itself',
    });
  }
  const routes = Array.isArray(c['routes']) ? (c['routes'] as Array<Record<string, unknown>>) : [];
  checkIntercept(routes, ctx);
  const names = new Set<string>();
  const hostPaths = new Set<string>();
  routes.forEach((r, i) => {
    if (typeof r !== 'object' || r === null) return;
    if (typeof r['name'] === 'string') {
      if (names.has(r['name'])) ctx.addIssue({ code: 'custom', path: ['routes', i, 'name'], message: `duplicate route name "${r['name']}"` });
      names.add(r['name']);
    }
    if (typeof r['host'] === 'string') {
      const prefix = typeof r['pathPrefix'] === 'string' ? r['pathPrefix'] : '/';
      const key = `${r['host'].toLowerCase()} ${prefix}`;
      if (hostPaths.has(key)) {
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'pathPrefix'], message: `another route already serves host "${r['host']}" with pathPrefix "${prefix}"` });
      }
      hostPaths.add(key);
    }
    const listen = r['listen'];
    checkProxyListen(listen, ['routes', i, 'listen']);
    if (isAddress(listen) && listen.port !== 0) {
      const other = listens.get(addressKey(listen));
      if (other) ctx.addIssue({ code: 'custom', path: ['routes', i, 'listen'], message: `is the same address as ${other}` });
      listens.set(addressKey(listen), `routes[${i}].listen`);
    }
  });
  checkEndpoints(c, ctx, names, listens);
  checkRouteProfiles(c, routes, ctx);
  checkRouteBindings(routes, profileLookup(c), ctx);
}

/** Issue 16: a route's profile as the binding check needs it (unknown names are checkRouteProfiles' to report). */
function profileLookup(c: Record<string, unknown>): ProfileLookup {
  return (sts) => {
    const name = sts === undefined ? DEFAULT_STS_PROFILE : sts;
    if (typeof name !== 'string') return undefined;
    const profiles = c['stsProfiles'] as Record<string, unknown> | undefined;
    const value = name === DEFAULT_STS_PROFILE ? c['sts'] : typeof profiles === 'object' && profiles !== null && Object.hasOwn(profiles, name) ? profiles[name] : undefined;
    if (typeof value !== 'object' || value === null) return undefined;
    return { name, keyPath: name === DEFAULT_STS_PROFILE ? 'sts' : `stsProfiles.${name}`, settings: value as BindingSettings };
  };
}

/** Each STS profile (the top-level `sts` and every `stsProfiles` entry) on its own: transport and client auth. */
function checkStsProfiles(c: Record<string, unknown>, ctx: z.RefinementCtx): void {
  checkSts(c['sts'], ['sts'], c, ctx);
  const profiles = c['stsProfiles'];
  if (typeof profiles !== 'object' || profiles === null) return;
  for (const [name, profile] of Object.entries(profiles)) {
    if (name === DEFAULT_STS_PROFILE) {
      ctx.addIssue({ code: 'custom', path: ['stsProfiles', name], message: `"${DEFAULT_STS_PROFILE}" is the top-level sts: give this profile another name` });
    }
    checkSts(profile, ['stsProfiles', name], c, ctx);
  }
}

function checkSts(value: unknown, path: PropertyKey[], c: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const sts = value as { url?: unknown; allowInsecureHttp?: unknown; clientAuth?: { method?: unknown; key?: unknown } } | undefined;
  if (typeof sts !== 'object' || sts === null) return;
  const where = path.join('.');
  checkProfileBinding(sts as BindingSettings, path, ctx);
  if (sts.url instanceof URL && sts.url.protocol === 'http:' && sts.allowInsecureHttp !== true && !isLoopbackHost(sts.url.hostname)) {
    ctx.addIssue({
      code: 'custom',
      path: [...path, 'url'],
      message: `plain http to a non-loopback STS would send the subject token in clear; use https or set ${where}.allowInsecureHttp: true`,
    });
  }
  const auth = sts.clientAuth;
  if (auth?.method === 'tls_client_auth' && c['identity'] === undefined) {
    ctx.addIssue({ code: 'custom', path: [...path, 'clientAuth', 'method'], message: 'tls_client_auth needs an identity (identity.cert and identity.key)' });
  }
  if (auth?.method === 'private_key_jwt' && auth.key === undefined && c['identity'] === undefined) {
    ctx.addIssue({ code: 'custom', path: [...path, 'clientAuth', 'key'], message: 'private_key_jwt needs a signing key: give clientAuth.key or an identity' });
  }
}

/** Issue 13: `routes[].sts` names a profile that exists (the top-level `sts` is `default`). */
function checkRouteProfiles(c: Record<string, unknown>, routes: ReadonlyArray<Record<string, unknown>>, ctx: z.RefinementCtx): void {
  const profiles = typeof c['stsProfiles'] === 'object' && c['stsProfiles'] !== null ? c['stsProfiles'] : {};
  const known = [DEFAULT_STS_PROFILE, ...Object.keys(profiles).filter((n) => n !== DEFAULT_STS_PROFILE)];
  routes.forEach((r, i) => {
    if (typeof r !== 'object' || r === null) return;
    const name = r['sts'] ?? DEFAULT_STS_PROFILE;
    if (typeof name !== 'string') return;
    if (!known.includes(name)) ctx.addIssue({ code: 'custom', path: ['routes', i, 'sts'], message: `no STS profile "${name}"; known: ${known.join(', ')}` });
  });
}

/** Issue 6 endpoints: listeners stay local, route names exist, token-only routes are reachable. */
function checkEndpoints(c: Record<string, unknown>, ctx: z.RefinementCtx, routeNames: ReadonlySet<string>, listens: Map<string, string>): void {
  const token = c['tokenEndpoint'] as { listen?: unknown; defaultRoute?: unknown } | undefined;
  const metadata = c['metadata'] as { gce?: Record<string, unknown>; azure?: Record<string, unknown> } | undefined;
  const referenced = new Set<unknown>();
  const checkRoute = (name: unknown, path: PropertyKey[]) => {
    referenced.add(name);
    if (typeof name === 'string' && !routeNames.has(name)) ctx.addIssue({ code: 'custom', path, message: `no route is named "${name}"` });
  };
  const checkListen = (listen: unknown, path: string[], allowLinkLocal: boolean) => {
    if (!isAddress(listen)) return;
    // These listeners hand out raw tokens: never to the network. 169.254.0.0/16 is link-local
    // (never routed), where GCE and Azure put their metadata servers.
    if (!isLoopbackHost(listen.host) && !(allowLinkLocal && isLinkLocalV4(listen.host))) {
      const where = allowLinkLocal ? 'a loopback or 169.254.x.x link-local address' : 'a loopback address';
      ctx.addIssue({ code: 'custom', path, message: `must be ${where}: this listener hands out tokens` });
    }
    if (listen.port === 0) return;
    const other = listens.get(addressKey(listen));
    if (other) ctx.addIssue({ code: 'custom', path, message: `is the same address as ${other}` });
    listens.set(addressKey(listen), path.join('.'));
  };
  const routes = Array.isArray(c['routes']) ? (c['routes'] as Array<Record<string, unknown>>) : [];
  const served = (token as { routes?: unknown } | undefined)?.routes;
  if (token) {
    checkListen(token.listen, ['tokenEndpoint', 'listen'], false);
    if (Array.isArray(served)) served.forEach((name, j) => checkRoute(name, ['tokenEndpoint', 'routes', j]));
    if (token.defaultRoute !== undefined) {
      checkRoute(token.defaultRoute, ['tokenEndpoint', 'defaultRoute']);
      checkDefaultServed(token.defaultRoute, served, routes, ctx);
    }
  }
  const gce = metadata?.gce;
  if (gce) {
    checkListen(gce['listen'], ['metadata', 'gce', 'listen'], true);
    checkRoute(gce['route'], ['metadata', 'gce', 'route']);
  }
  const azure = metadata?.azure;
  if (azure) {
    checkListen(azure['listen'], ['metadata', 'azure', 'listen'], true);
    const resources = azure['resources'];
    if (typeof resources === 'object' && resources !== null) {
      for (const [resource, route] of Object.entries(resources)) checkRoute(route, ['metadata', 'azure', 'resources', resource]);
    }
    if (azure['defaultRoute'] !== undefined) checkRoute(azure['defaultRoute'], ['metadata', 'azure', 'defaultRoute']);
  }
  // A route without upstream only makes sense if something can hand its token out. The token
  // endpoint serves every such route unless tokenEndpoint.routes lists (and so references) its own.
  const tokenServesAllTokenOnly = token !== undefined && !Array.isArray(served);
  routes.forEach((r, i) => {
    if (typeof r !== 'object' || r === null || r['upstream'] !== undefined || tokenServesAllTokenOnly || referenced.has(r['name'])) return;
    ctx.addIssue({ code: 'custom', path: ['routes', i, 'upstream'], message: 'is required unless tokenEndpoint or metadata serves this route' });
  });
}

/**
 * tokenEndpoint.defaultRoute answers requests no route matches, so it must be one the
 * endpoint serves (issue 10 item 12): a listed route, or by default a token-only route.
 */
function checkDefaultServed(name: unknown, served: unknown, routes: ReadonlyArray<Record<string, unknown>>, ctx: z.RefinementCtx): void {
  const route = routes.find((r) => typeof r === 'object' && r !== null && r['name'] === name);
  if (typeof name !== 'string' || !route) return; // unknown names are reported by checkRoute
  if (Array.isArray(served) ? served.includes(name) : route['upstream'] === undefined) return;
  const message = Array.isArray(served)
    ? `route "${name}" is not in tokenEndpoint.routes: the endpoint does not serve it`
    : `route "${name}" has an upstream, and the endpoint serves only token-only routes unless tokenEndpoint.routes lists it`;
  ctx.addIssue({ code: 'custom', path: ['tokenEndpoint', 'defaultRoute'], message });
}

function isLinkLocalV4(host: string): boolean {
  return isIP(host) === 4 && host.startsWith('169.254.');
}

/**
 * `intercept` decides per CONNECT tunnel, before any path is known, so it needs a `host` and
 * every route of one destination must agree on it (`h` and `h:443` are one https destination).
 */
function checkIntercept(routes: ReadonlyArray<Record<string, unknown>>, ctx: z.RefinementCtx): void {
  const byHost = new Map<string, boolean>();
  routes.forEach((r, i) => {
    if (typeof r !== 'object' || r === null) return;
    const intercept = r['intercept'] === true;
    if (typeof r['host'] !== 'string') {
      if (intercept) ctx.addIssue({ code: 'custom', path: ['routes', i, 'intercept'], message: 'needs "host": the forward proxy matches routes by host' });
      return;
    }
    const host = r['host'].toLowerCase().replace(/:443$/, '');
    const other = byHost.get(host);
    if (other !== undefined && other !== intercept) {
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'intercept'], message: `every route for host "${host}" must give the same intercept value` });
    }
    byHost.set(host, other ?? intercept);
  });
}

function addressKey(a: ListenAddress): string {
  return `${a.host}:${a.port}`;
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  // Only literal addresses: a DNS name such as 127.0.0.1.nip.io is not loopback.
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

/**
 * The token cache of `config.cache` and `config.routes`: one entry family per route,
 * exchanging at its STS profile with its subject token (issue 13), closed with the sidecar.
 */
import { DEFAULT_STS_PROFILE, type Config, type RouteConfig } from '../config/schema.js';
import type { Credentials } from '../credentials/from-config.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Redactor } from '../log/redact.js';
import { withCertificateBinding } from '../sts/certificate-binding.js';
import type { Exchange } from '../sts/client.js';
import { withDpopBinding } from '../sts/dpop-binding.js';
import { routeSubjectTokenConfigs } from '../credentials/subject-tokens-from-config.js';
import { effectiveBinding, stsProfileConfigs } from '../sts/profiles.js';
import type { StsClients } from '../sts/profiles-from-config.js';
import { createTokenProvider, type RouteExchange, type TokenProvider, type TokenProviderOptions } from './token-provider.js';

export interface TokenProviderContext {
  /** Each route's subject token and each profile's actor token. */
  readonly credentials: Pick<Credentials, 'subjectTokens' | 'actorToken' | 'forRoute' | 'actorTokenOf'>;
  /** Each profile's STS client. */
  readonly stsClients: Pick<StsClients, 'client'>;
  readonly identity: TokenProviderOptions['identity'];
  /** The DPoP key, when a route is DPoP-bound (dpop/from-config.ts). */
  readonly dpopKeys?: TokenProviderOptions['dpopKeys'];
  readonly observer: TokenProviderOptions['observer'];
  readonly redactor: Redactor;
  readonly resources: Deferrer;
}

export function tokenProviderFromConfig(config: Config, parts: TokenProviderContext): TokenProvider {
  const { credentials, stsClients, observer } = parts;
  // RFC 8705 3.1 and RFC 9449 6.1: a token bound to another certificate or key is discarded
  // and asked for once more.
  const exchanges = new Map<string, Exchange>();
  const exchangeAt = (profile: string): Exchange => {
    let exchange = exchanges.get(profile);
    if (!exchange) {
      const client = stsClients.client(profile);
      exchanges.set(profile, (exchange = withDpopBinding(withCertificateBinding((params, generation) => client.exchange(params, generation), observer), observer)));
    }
    return exchange;
  };
  const tokens = createTokenProvider({
    routes: config.routes.map((route) => ({
      ...routeExchange(config, route),
      credentials: { subjectTokens: credentials.forRoute(route.name).tokens, actorToken: credentials.actorTokenOf(route.sts), exchange: exchangeAt(route.sts) },
    })),
    subjectTokens: credentials.subjectTokens,
    actorToken: credentials.actorToken,
    identity: parts.identity,
    dpopKeys: parts.dpopKeys,
    exchange: exchangeAt(DEFAULT_STS_PROFILE),
    refreshBeforeExpiryRatio: config.cache.refreshBeforeExpiryRatio,
    expirySkewMs: config.cache.expirySkewSeconds * 1000,
    retryInitialDelayMs: config.cache.retryInitialDelaySeconds * 1000,
    retryMaxDelayMs: config.cache.retryMaxDelaySeconds * 1000,
    maxEntries: config.cache.maxEntries,
    reexchangeAfter401IntervalMs: config.limits.reexchangeAfter401IntervalSeconds * 1000,
    redactor: parts.redactor,
    observer,
  });
  parts.resources.defer(() => tokens.close());
  return tokens;
}

/**
 * Per route, everything its token depends on, as one string: its exchange parameters, the
 * STS and how the sidecar authenticates there, the subject and actor tokens' sources, the
 * identity, and the cache policy. A configuration reload carries a route's cached token over
 * to the new generation only when this did not change (issue 13).
 */
export function routeFingerprints(config: Config): Map<string, string> {
  const profiles = new Map(stsProfileConfigs(config).map((p) => [p.name, p.sts]));
  const subjectTokens = new Map(routeSubjectTokenConfigs(config).map((s) => [s.route, s.config]));
  const shared = { identity: config.identity ?? null, dpop: config.dpop, cache: config.cache };
  return new Map(
    config.routes.map((r) => [r.name, JSON.stringify({ ...shared, sts: profiles.get(r.sts), subjectToken: subjectTokens.get(r.name), exchange: routeExchange(config, r) })]),
  );
}

function routeExchange(config: Config, route: RouteConfig): RouteExchange {
  const binding = effectiveBinding(config, route);
  return {
    name: route.name,
    lazy: route.lazy,
    sts: route.sts,
    params: {
      audience: route.audience,
      resource: route.resource,
      scope: route.scope,
      requestedTokenType: route.requestedTokenType,
      options: route.options,
    },
    ...(binding.binding === 'dpop' ? { dpop: { allowBearer: binding.allowBearer } } : {}),
  };
}

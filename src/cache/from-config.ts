/**
 * The token cache of `config.cache` and `config.routes`: one entry family per route,
 * exchanging through the given STS client, closed with the sidecar.
 */
import type { Config, RouteConfig } from '../config/schema.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Redactor } from '../log/redact.js';
import { withCertificateBinding } from '../sts/certificate-binding.js';
import { withDpopBinding } from '../sts/dpop-binding.js';
import type { StsClient } from '../sts/client.js';
import { createTokenProvider, type RouteExchange, type TokenProvider, type TokenProviderOptions } from './token-provider.js';

export interface TokenProviderContext {
  readonly subjectTokens: TokenProviderOptions['subjectTokens'];
  readonly actorToken: TokenProviderOptions['actorToken'];
  readonly identity: TokenProviderOptions['identity'];
  /** The DPoP key, when a route has `binding: dpop` (dpop/from-config.ts). */
  readonly dpopKeys?: TokenProviderOptions['dpopKeys'];
  readonly stsClient: StsClient;
  readonly observer: TokenProviderOptions['observer'];
  readonly redactor: Redactor;
  readonly resources: Deferrer;
}

export function tokenProviderFromConfig(config: Config, parts: TokenProviderContext): TokenProvider {
  const { stsClient } = parts;
  const tokens = createTokenProvider({
    routes: config.routes.map(routeExchange),
    subjectTokens: parts.subjectTokens,
    actorToken: parts.actorToken,
    identity: parts.identity,
    dpopKeys: parts.dpopKeys,
    // RFC 8705 3.1 and RFC 9449 6.1: a token bound to another certificate or key is discarded
    // and asked for once more.
    exchange: withDpopBinding(withCertificateBinding((params, generation) => stsClient.exchange(params, generation), parts.observer), parts.observer),
    refreshBeforeExpiryRatio: config.cache.refreshBeforeExpiryRatio,
    expirySkewMs: config.cache.expirySkewSeconds * 1000,
    retryInitialDelayMs: config.cache.retryInitialDelaySeconds * 1000,
    retryMaxDelayMs: config.cache.retryMaxDelaySeconds * 1000,
    maxEntries: config.cache.maxEntries,
    reexchangeAfter401IntervalMs: config.limits.reexchangeAfter401IntervalSeconds * 1000,
    redactor: parts.redactor,
    observer: parts.observer,
  });
  parts.resources.defer(() => tokens.close());
  return tokens;
}

function routeExchange(route: RouteConfig): RouteExchange {
  return {
    name: route.name,
    lazy: route.lazy,
    params: {
      audience: route.audience,
      resource: route.resource,
      scope: route.scope,
      requestedTokenType: route.requestedTokenType,
      options: route.options,
    },
    ...(route.binding === 'dpop' ? { dpop: { allowBearer: route.dpop?.allowBearer ?? false } } : {}),
  };
}

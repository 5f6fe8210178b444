/** What the cache knows of a route: its name, whether it is lazy, and its exchange parameters. */
import type { SubjectTokenProvider } from '../credentials/subject-token.js';
import type { Exchange } from '../sts/client.js';
import type { ExchangeParams } from '../sts/exchange-request.js';

/** Route-level exchange settings; the subject and actor tokens are added per exchange. */
export interface RouteExchange {
  readonly name: string;
  /** Exchanged on first use (and refreshed while in use) rather than at start-up and forever. */
  readonly lazy: boolean;
  readonly params: Omit<ExchangeParams, 'subjectToken' | 'subjectTokenType' | 'actorToken' | 'actorTokenType' | 'dpop'>;
  /** `binding: dpop` (RFC 9449): the exchange carries a proof of the current DPoP key. */
  readonly dpop?: { readonly allowBearer: boolean } | undefined;
  /** Issue 13: the STS profile the route exchanges at, part of the cache key (default `default`). */
  readonly sts?: string;
  /** Issue 13: the route's own STS client and tokens; without them, the provider's. */
  readonly credentials?: RouteCredentials;
}

export interface ActorToken {
  current(): string;
  readonly type: string;
}

/** Where a route's token comes from: its profile's exchange and actor token, and its subject token. */
export interface RouteCredentials {
  readonly subjectTokens: SubjectTokenProvider;
  readonly actorToken: ActorToken | undefined;
  readonly exchange: Exchange;
}

/** What the cache knows of a route: its name, whether it is lazy, and its exchange parameters. */
import type { ExchangeParams } from '../sts/exchange-request.js';

/** Route-level exchange settings; the subject and actor tokens are added per exchange. */
export interface RouteExchange {
  readonly name: string;
  /** Exchanged on first use (and refreshed while in use) rather than at start-up and forever. */
  readonly lazy: boolean;
  readonly params: Omit<ExchangeParams, 'subjectToken' | 'subjectTokenType' | 'actorToken' | 'actorTokenType' | 'dpop'>;
  /** `binding: dpop` (RFC 9449): the exchange carries a proof of the current DPoP key. */
  readonly dpop?: { readonly allowBearer: boolean } | undefined;
}

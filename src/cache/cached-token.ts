/**
 * The token the cache hands out: all the proxy and the endpoints know of a token. The cache
 * owns this type so they never import the STS client's (issue 11 item 2); an issued token
 * (sts/exchange-response.ts) is one of these without the identity.
 */
import type { IdentityGeneration } from '../tls/identity.js';

export interface CachedToken {
  readonly accessToken: string;
  /** RFC 8693 section 2.2.1 `issued_token_type`. */
  readonly issuedTokenType: string;
  /** `Bearer` or `N_A` (RFC 8693 section 2.2.1), as the STS spelled it. */
  readonly tokenType: string;
  /** Epoch ms when the STS was asked (the lifetime counts from there, conservatively). */
  readonly issuedAt: number;
  /** Epoch ms after which the token must not be used. */
  readonly expiresAt: number;
  readonly scope: string | undefined;
  /**
   * The identity generation the token was obtained with: the proxy must send it on a
   * connection presenting that generation's certificate (RFC 8705 section 3).
   */
  readonly identity: IdentityGeneration | undefined;
}

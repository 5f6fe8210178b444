/**
 * The token the cache hands out: all the proxy and the endpoints know of a token. The cache
 * owns this type so they never import the STS client's (issue 11 item 2): what the STS
 * issued, plus the identity generation it was issued for.
 */
import type { DpopKey } from '../dpop/key.js';
import type { IssuedToken } from '../sts/exchange-response.js';
import type { IdentityGeneration } from '../tls/identity.js';

/** What the STS issued (accessToken, issuedTokenType, tokenType, issuedAt, expiresAt, scope), and: */
export interface CachedToken extends IssuedToken {
  /**
   * The identity generation the token was obtained with: the proxy must send it on a
   * connection presenting that generation's certificate (RFC 8705 section 3).
   */
  readonly identity: IdentityGeneration | undefined;
  /**
   * The DPoP key a `token_type: DPoP` token is bound to (RFC 9449): every request carrying it
   * needs a fresh proof signed with this key. Absent for bearer tokens.
   */
  readonly dpop?: DpopKey | undefined;
}

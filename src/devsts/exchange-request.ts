/**
 * The reference STS's view of a token-exchange request: the generic RFC 8693 section
 * 2.1 parse (src/oauth) plus what this STS can issue.
 */
import { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, type IssuableTokenType } from './constants.js';
import { OAuthError } from '../oauth/oauth-error.js';
import type { TokenParams } from '../oauth/request-parsing.js';
import { parseTokenExchangeRequest, type TokenExchangeRequest } from '../oauth/token-exchange-request.js';

export interface ExchangeRequest extends Omit<TokenExchangeRequest, 'requestedTokenType'> {
  /** Defaults to the access_token type when the client did not ask for one. */
  readonly requestedTokenType: IssuableTokenType;
}

export function parseExchangeRequest(params: TokenParams): ExchangeRequest {
  const request = parseTokenExchangeRequest(params);
  return Object.freeze({ ...request, requestedTokenType: issuable(request.requestedTokenType) });
}

function issuable(value: string | undefined): IssuableTokenType {
  if (value === undefined || value === TOKEN_TYPE_ACCESS_TOKEN) return TOKEN_TYPE_ACCESS_TOKEN;
  if (value === TOKEN_TYPE_JWT) return TOKEN_TYPE_JWT;
  throw new OAuthError(
    'invalid_request',
    `requested_token_type is not supported; use ${TOKEN_TYPE_ACCESS_TOKEN} or ${TOKEN_TYPE_JWT}`,
  );
}

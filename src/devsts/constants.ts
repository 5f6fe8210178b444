/**
 * Wire identifiers from RFC 8693 (token exchange) used by the dev STS. Kept in one
 * place so the parser, the decision logic and the tests agree on exact spellings.
 */

import { TOKEN_TYPE } from '../oauth/urns.js';

/** RFC 8693 section 3: token type identifiers (spelled in oauth/urns.ts). */
export const TOKEN_TYPE_ACCESS_TOKEN = TOKEN_TYPE.accessToken;
export const TOKEN_TYPE_JWT = TOKEN_TYPE.jwt;
export const TOKEN_TYPE_ID_TOKEN = TOKEN_TYPE.idToken;

/** Token types this STS can issue (requested_token_type, RFC 8693 section 2.1). */
export type IssuableTokenType = typeof TOKEN_TYPE_ACCESS_TOKEN | typeof TOKEN_TYPE_JWT;

/** subject_token_type / actor_token_type values under which a JWT is verified. */
export const JWT_BEARING_TOKEN_TYPES: ReadonlySet<string> = new Set([
  TOKEN_TYPE_JWT,
  TOKEN_TYPE_ID_TOKEN,
  TOKEN_TYPE_ACCESS_TOKEN,
]);

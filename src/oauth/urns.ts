/**
 * The OAuth URNs the package speaks, spelled once: the sidecar's config defaults, its STS
 * client, the local token endpoint, the reference STS and the demo all import them here.
 */

/** RFC 8693 section 3: token type identifiers. */
export const TOKEN_TYPE = {
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
} as const;

/** RFC 8693 section 2.1: the grant type of a token-exchange request. */
export const GRANT_TYPE_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** RFC 7523 section 2.2: a JWT client assertion (private_key_jwt). */
export const CLIENT_ASSERTION_TYPE_JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

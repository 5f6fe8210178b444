/**
 * Client authentication at the token endpoint (RFC 6749 section 2.3), required
 * only when clients are configured. Two methods: client_secret_basic (section
 * 2.3.1, HTTP Basic over form-urlencoded id and secret) and client_secret_post
 * (credentials as body parameters).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { OAuthError } from '../oauth/oauth-error.js';
import type { TokenParams } from '../oauth/request-parsing.js';

export interface RegisteredClient {
  readonly clientId: string;
  readonly clientSecret: string;
}

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post';

export interface AuthenticatedClient {
  readonly clientId: string;
  readonly method: ClientAuthMethod;
}

/**
 * RFC 7235 section 3.1 requires a challenge on every 401; RFC 6749 section 5.2
 * requires it in particular when the client tried the Authorization header.
 */
export const BASIC_CHALLENGE = 'Basic realm="dev-sts"';

interface PresentedCredentials {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly method: ClientAuthMethod;
}

/**
 * Returns the authenticated client, or undefined when no clients are configured
 * (then authentication is not required and any presented credentials are ignored).
 */
export function authenticateClient(
  authorization: string | undefined,
  params: TokenParams,
  clients: readonly RegisteredClient[],
): AuthenticatedClient | undefined {
  if (clients.length === 0) return undefined;
  const presented = presentedCredentials(authorization, params);
  const client = clients.find((c) => c.clientId === presented.clientId);
  // Compare against something even for an unknown id, so timing does not reveal which ids exist.
  const secretMatches = constantTimeEqual(presented.clientSecret, client?.clientSecret ?? '\u0000unknown-client');
  if (client === undefined || !secretMatches) throw invalidClient('client authentication failed');
  return Object.freeze({ clientId: client.clientId, method: presented.method });
}

function presentedCredentials(authorization: string | undefined, params: TokenParams): PresentedCredentials {
  const bodyId = params.get('client_id')?.[0];
  const bodySecret = params.get('client_secret')?.[0];
  if (authorization !== undefined) {
    // RFC 6749 section 2.3: a client MUST NOT use more than one authentication method per request.
    if (bodySecret !== undefined) {
      throw new OAuthError('invalid_request', 'use one client authentication method, not both (RFC 6749 section 2.3)');
    }
    const basic = parseBasicCredentials(authorization);
    if (bodyId !== undefined && bodyId !== basic.clientId) {
      throw invalidClient('client_id in the body does not match the Authorization header');
    }
    return basic;
  }
  if (bodyId !== undefined && bodySecret !== undefined) {
    return { clientId: bodyId, clientSecret: bodySecret, method: 'client_secret_post' };
  }
  throw invalidClient('client authentication is required (client_secret_basic or client_secret_post)');
}

/**
 * RFC 6749 section 2.3.1: the id and secret are each encoded with
 * application/x-www-form-urlencoded (Appendix B) before joining with ":" and
 * base64, so `a b:c` arrives as `a+b%3Ac`. Decode in the same order, reversed.
 */
export function parseBasicCredentials(authorization: string): PresentedCredentials {
  const match = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(authorization);
  if (match?.[1] === undefined) throw invalidClient('Authorization header is not valid Basic credentials');
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw invalidClient('Authorization header is not valid Basic credentials');
  try {
    return {
      clientId: formDecode(decoded.slice(0, colon)),
      clientSecret: formDecode(decoded.slice(colon + 1)),
      method: 'client_secret_basic',
    };
  } catch {
    throw invalidClient('Basic credentials are not form-urlencoded (RFC 6749 section 2.3.1)');
  }
}

/** Appendix B: "+" is a space, then percent-decoding as UTF-8. Throws URIError on bad escapes. */
function formDecode(value: string): string {
  return decodeURIComponent(value.replace(/\+/g, ' '));
}

/** Equal-time comparison of two strings of any length (hashing first makes the lengths equal). */
export function constantTimeEqual(a: string, b: string): boolean {
  const digestA = createHash('sha256').update(a, 'utf8').digest();
  const digestB = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(digestA, digestB);
}

function invalidClient(description: string): OAuthError {
  return new OAuthError('invalid_client', description, { headers: { 'www-authenticate': BASIC_CHALLENGE } });
}

/**
 * Client authentication at the token endpoint (RFC 6749 section 2.3), required
 * only when clients are configured. Each registered client has one method (RFC 7591
 * `token_endpoint_auth_method`):
 *  - client_secret_basic / client_secret_post (RFC 6749 section 2.3.1),
 *  - tls_client_auth (RFC 8705 section 2.1): client_id plus a verified TLS client
 *    certificate carrying the registered subject DN or subjectAltName,
 *  - private_key_jwt (RFC 7523 section 2.2): a JWT assertion signed with a registered key.
 * The request decides which method is being attempted; the registration must agree.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { JSONWebKeySet } from 'jose';
import {
  CLIENT_ASSERTION_TYPE_JWT_BEARER,
  createClientAssertionVerifier,
  unverifiedAssertionSubject,
  type ClientAssertionVerifier,
} from './client-assertion.js';
import { certificateHasIdentity, type ExpectedCertificateIdentity } from './certificate-identity.js';
import { invalidClient, OAuthError } from '../oauth/oauth-error.js';
import type { PeerCertificate } from './peer-certificate.js';
import type { TokenParams } from '../oauth/request-parsing.js';

export { BASIC_CHALLENGE } from '../oauth/oauth-error.js';

export type RegisteredClient =
  | { readonly clientId: string; readonly method: 'client_secret'; readonly clientSecret: string }
  | { readonly clientId: string; readonly method: 'tls_client_auth'; readonly expected: ExpectedCertificateIdentity }
  | { readonly clientId: string; readonly method: 'private_key_jwt'; readonly jwks: JSONWebKeySet };

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'tls_client_auth' | 'private_key_jwt';

export interface AuthenticatedClient {
  readonly clientId: string;
  readonly method: ClientAuthMethod;
}

export interface ClientAuthRequest {
  readonly authorization: string | undefined;
  readonly params: TokenParams;
  readonly peer: PeerCertificate;
}

export interface ClientAuthenticator {
  /**
   * The authenticated client, or undefined when no clients are configured (then
   * authentication is not required and any presented credentials are ignored).
   * Throws OAuthError (invalid_client, or invalid_request for a malformed attempt).
   */
  authenticate(request: ClientAuthRequest): Promise<AuthenticatedClient | undefined>;
}

export interface ClientAuthenticatorConfig {
  readonly clients: readonly RegisteredClient[];
  /** Accepted `aud` of private_key_jwt assertions. */
  readonly assertionAudiences: readonly string[];
  readonly maxAssertionLifetimeSeconds: number;
}

type Presented =
  | { readonly method: 'client_secret_basic' | 'client_secret_post'; readonly clientId: string; readonly clientSecret: string }
  | { readonly method: 'private_key_jwt'; readonly clientId: string | undefined; readonly assertion: string }
  | { readonly method: 'tls_client_auth'; readonly clientId: string };

export function createClientAuthenticator(config: ClientAuthenticatorConfig): ClientAuthenticator {
  const assertions: ClientAssertionVerifier = createClientAssertionVerifier({
    audiences: config.assertionAudiences,
    maxLifetimeSeconds: config.maxAssertionLifetimeSeconds,
  });
  const byId = new Map(config.clients.map((c) => [c.clientId, c]));

  return {
    async authenticate({ authorization, params, peer }) {
      if (byId.size === 0) return undefined;
      const presented = presentedCredentials(authorization, params);
      switch (presented.method) {
        case 'client_secret_basic':
        case 'client_secret_post':
          return authenticateSecret(presented, byId.get(presented.clientId));
        case 'tls_client_auth':
          return authenticateCertificate(presented.clientId, byId.get(presented.clientId), peer);
        case 'private_key_jwt': {
          const subject = unverifiedAssertionSubject(presented.assertion);
          // RFC 7521 section 4.2: client_id is optional, and when sent names the same client as the assertion.
          if (presented.clientId !== undefined && subject !== undefined && presented.clientId !== subject) {
            throw invalidClient('client_id does not match the client_assertion subject (RFC 7521 section 4.2)');
          }
          const clientId = presented.clientId ?? subject;
          const client = clientId === undefined ? undefined : byId.get(clientId);
          if (client?.method !== 'private_key_jwt') throw invalidClient('client authentication failed');
          await assertions.verify(presented.assertion, client);
          return Object.freeze({ clientId: client.clientId, method: 'private_key_jwt' });
        }
      }
    },
  };
}

function authenticateSecret(
  presented: { readonly method: 'client_secret_basic' | 'client_secret_post'; readonly clientSecret: string },
  client: RegisteredClient | undefined,
): AuthenticatedClient {
  const expected = client?.method === 'client_secret' ? client.clientSecret : '\u0000unknown-client';
  // Compare against something even for an unknown id, so timing does not reveal which ids exist.
  const secretMatches = constantTimeEqual(presented.clientSecret, expected);
  if (client?.method !== 'client_secret' || !secretMatches) throw invalidClient('client authentication failed');
  return Object.freeze({ clientId: client.clientId, method: presented.method });
}

/**
 * RFC 8705 section 2: "If no certificate is presented, or that which is presented
 * doesn't match that which is expected for the given client_id, the authorization
 * server returns ... the invalid_client error code".
 */
function authenticateCertificate(clientId: string, client: RegisteredClient | undefined, peer: PeerCertificate): AuthenticatedClient {
  if (client === undefined) throw invalidClient('client authentication failed');
  if (client.method !== 'tls_client_auth') {
    throw invalidClient('client authentication is required (client_secret_basic, client_secret_post, tls_client_auth or private_key_jwt)');
  }
  if (peer.state !== 'verified') {
    throw invalidClient('tls_client_auth needs a client certificate that verifies against the trusted CA (RFC 8705 section 2.1)');
  }
  if (!certificateHasIdentity(peer.certificate, client.expected)) {
    throw invalidClient(`the client certificate does not carry the registered tls_client_auth_${client.expected.kind} (RFC 8705 section 2.1.2)`);
  }
  return Object.freeze({ clientId, method: 'tls_client_auth' });
}

function presentedCredentials(authorization: string | undefined, params: TokenParams): Presented {
  const bodyId = params.get('client_id')?.[0];
  const bodySecret = params.get('client_secret')?.[0];
  const assertionType = params.get('client_assertion_type')?.[0];
  const assertion = params.get('client_assertion')?.[0];
  const attempted = [authorization !== undefined, bodySecret !== undefined, assertion !== undefined || assertionType !== undefined];
  // RFC 6749 section 2.3: a client MUST NOT use more than one authentication method per request.
  if (attempted.filter(Boolean).length > 1) {
    throw new OAuthError('invalid_request', 'use one client authentication method, not several (RFC 6749 section 2.3)');
  }
  if (authorization !== undefined) {
    const basic = parseBasicCredentials(authorization);
    if (bodyId !== undefined && bodyId !== basic.clientId) {
      throw invalidClient('client_id in the body does not match the Authorization header');
    }
    return basic;
  }
  if (bodySecret !== undefined) {
    if (bodyId === undefined) throw invalidClient('client_secret was sent without client_id');
    return { method: 'client_secret_post', clientId: bodyId, clientSecret: bodySecret };
  }
  if (assertion !== undefined || assertionType !== undefined) {
    // RFC 7521 section 4.2: both parameters are REQUIRED together.
    if (assertion === undefined || assertionType === undefined) {
      throw new OAuthError('invalid_request', 'client_assertion and client_assertion_type must be sent together (RFC 7521 section 4.2)');
    }
    if (assertionType !== CLIENT_ASSERTION_TYPE_JWT_BEARER) {
      throw invalidClient(`unsupported client_assertion_type; use ${CLIENT_ASSERTION_TYPE_JWT_BEARER} (RFC 7523 section 2.2)`);
    }
    return { method: 'private_key_jwt', clientId: bodyId, assertion };
  }
  // RFC 8705 section 2: with mutual TLS the client sends client_id and nothing else.
  if (bodyId !== undefined) return { method: 'tls_client_auth', clientId: bodyId };
  throw invalidClient('client authentication is required (client_secret_basic, client_secret_post, tls_client_auth or private_key_jwt)');
}

/**
 * RFC 6749 section 2.3.1: the id and secret are each encoded with
 * application/x-www-form-urlencoded (Appendix B) before joining with ":" and
 * base64, so `a b:c` arrives as `a+b%3Ac`. Decode in the same order, reversed.
 */
export function parseBasicCredentials(authorization: string): { method: 'client_secret_basic'; clientId: string; clientSecret: string } {
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

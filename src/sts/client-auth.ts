/**
 * OAuth client authentication at the STS, as a value (after oauth4webapi): each
 * method knows how to decorate the token request. RFC 6749 section 2.3.
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import type { SecretSource } from '../credentials/secret-source.js';
import { CLIENT_ASSERTION_TYPE_JWT_BEARER } from '../oauth/urns.js';

export interface TokenRequestParts {
  readonly headers: Record<string, string>;
  /** Wire parameters in RFC spelling (snake_case), repeated keys allowed. */
  readonly params: Array<[string, string]>;
}

export interface ClientAuth {
  readonly method: string;
  /** May be async: private_key_jwt signs a fresh assertion for every request. */
  apply(request: TokenRequestParts): void | Promise<void>;
}

export function noClientAuth(clientId?: string): ClientAuth {
  return {
    method: 'none',
    apply({ params }) {
      // A public client may still identify itself (RFC 6749 section 3.2.1).
      if (clientId) params.push(['client_id', clientId]);
    },
  };
}

/**
 * RFC 6749 section 2.3.1: the client id and secret are form-urlencoded (Appendix B)
 * *before* being joined with ":" and base64-encoded. Many clients skip that step and
 * break on secrets containing ":" or non-ASCII; we do not.
 */
export function clientSecretBasic(clientId: string, secret: SecretSource): ClientAuth {
  return {
    method: 'client_secret_basic',
    apply({ headers }) {
      headers['authorization'] = `Basic ${Buffer.from(basicCredentials(clientId, secret.current())).toString('base64')}`;
    },
  };
}

/** The `id:secret` pair a Basic header encodes, each part form-urlencoded first. */
export function basicCredentials(clientId: string, secret: string): string {
  return `${formEncode(clientId)}:${formEncode(secret)}`;
}

export function clientSecretPost(clientId: string, secret: SecretSource): ClientAuth {
  return {
    method: 'client_secret_post',
    apply({ params }) {
      params.push(['client_id', clientId], ['client_secret', secret.current()]);
    },
  };
}

/**
 * RFC 8705 section 2.1 (PKI mutual-TLS): the TLS client certificate authenticates the
 * client; the request carries client_id so the server knows which registration to match
 * the certificate against. The transport, not this object, presents the certificate.
 */
export function tlsClientAuth(clientId: string): ClientAuth {
  return {
    method: 'tls_client_auth',
    apply({ params }) {
      params.push(['client_id', clientId]);
    },
  };
}

export interface PrivateKeyJwtOptions {
  readonly clientId: string;
  /** The current signing key (read per request: the identity's key rotates). */
  readonly key: () => KeyObject;
  readonly algorithm: string;
  readonly keyId?: string | undefined;
  /** `aud` of the assertion: the token endpoint URL unless configured. */
  readonly audience: string;
  readonly lifetimeSeconds: number;
}

/**
 * RFC 7523 section 2.2 with the claims of section 3 (and RFC 7521 4.2): iss = sub =
 * client_id, aud = the STS, a short exp and a unique jti so a captured assertion cannot
 * be replayed for long.
 */
export function privateKeyJwt(options: PrivateKeyJwtOptions): ClientAuth {
  return {
    method: 'private_key_jwt',
    async apply({ params }) {
      const now = Math.floor(Date.now() / 1000);
      const assertion = await new SignJWT({})
        .setProtectedHeader({ alg: options.algorithm, typ: 'JWT', ...(options.keyId ? { kid: options.keyId } : {}) })
        .setIssuer(options.clientId)
        .setSubject(options.clientId)
        .setAudience(options.audience)
        .setIssuedAt(now)
        .setNotBefore(now - 5)
        .setExpirationTime(now + options.lifetimeSeconds)
        .setJti(randomUUID())
        .sign(options.key());
      params.push(
        ['client_id', options.clientId],
        ['client_assertion_type', CLIENT_ASSERTION_TYPE_JWT_BEARER],
        ['client_assertion', assertion],
      );
    },
  };
}

/** The JWS algorithm a key signs with when none is configured. */
export function defaultJwsAlgorithm(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    case 'ed25519':
      return 'EdDSA';
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'secp384r1') return 'ES384';
      if (curve === 'secp521r1') return 'ES512';
      return 'ES256';
    }
    default:
      throw new Error(`cannot sign a client assertion with a ${key.asymmetricKeyType ?? 'unknown'} key`);
  }
}

/** application/x-www-form-urlencoded encoding of one value (space becomes "+"). */
export function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}

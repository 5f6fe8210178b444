/**
 * OAuth client authentication at the STS, as a value (after oauth4webapi): each
 * method knows how to decorate the token request. RFC 6749 section 2.3.
 */
import type { SecretSource } from '../credentials/secret-source.js';

export interface TokenRequestParts {
  readonly headers: Record<string, string>;
  /** Wire parameters in RFC spelling (snake_case), repeated keys allowed. */
  readonly params: Array<[string, string]>;
}

export interface ClientAuth {
  readonly method: string;
  apply(request: TokenRequestParts): void;
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
      const credentials = `${formEncode(clientId)}:${formEncode(secret.current())}`;
      headers['authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
    },
  };
}

export function clientSecretPost(clientId: string, secret: SecretSource): ClientAuth {
  return {
    method: 'client_secret_post',
    apply({ params }) {
      params.push(['client_id', clientId], ['client_secret', secret.current()]);
    },
  };
}

/** application/x-www-form-urlencoded encoding of one value (space becomes "+"). */
export function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}

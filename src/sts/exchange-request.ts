/**
 * Building an RFC 8693 token-exchange request (section 2.1), form-encoded per the
 * RFC or as JSON the way Google's STS v1/token accepts it. Building and validating
 * (exchange-response.ts) are separate so each can be tested on its own.
 */
import { GRANT_TYPE_TOKEN_EXCHANGE } from '../oauth/urns.js';
import type { DpopKey } from '../dpop/key.js';
import type { ClientAuth, TokenRequestParts } from './client-auth.js';

export { GRANT_TYPE_TOKEN_EXCHANGE };

/** Everything that shapes the issued token, i.e. everything the cache keys on. */
export interface ExchangeParams {
  readonly subjectToken: string;
  readonly subjectTokenType: string;
  readonly requestedTokenType?: string | undefined;
  readonly audience?: readonly string[] | undefined;
  readonly resource?: readonly string[] | undefined;
  /** Space-delimited (RFC 6749 section 3.3). */
  readonly scope?: string | undefined;
  readonly actorToken?: string | undefined;
  readonly actorTokenType?: string | undefined;
  /** Google's non-standard `options`, sent as a JSON string. */
  readonly options?: Readonly<Record<string, unknown>> | undefined;
  /** A `binding: dpop` route: the request carries a DPoP proof of this key (RFC 9449 section 5). */
  readonly dpop?: DpopExchange | undefined;
}

/** RFC 9449 section 5: what a DPoP token request needs, and what its reply may be. */
export interface DpopExchange {
  readonly key: DpopKey;
  /** A Bearer reply (the STS ignored the proof) is kept rather than refused. */
  readonly allowBearer: boolean;
}

export type RequestEncoding = 'form' | 'json';
export type JsonFieldNames = 'camelCase' | 'snake_case';

export interface EncodedTokenRequest {
  readonly headers: Record<string, string>;
  readonly body: string;
}

export function exchangeParameters(p: ExchangeParams): Array<[string, string]> {
  const params: Array<[string, string]> = [
    ['grant_type', GRANT_TYPE_TOKEN_EXCHANGE],
    ['subject_token', p.subjectToken],
    ['subject_token_type', p.subjectTokenType],
  ];
  if (p.requestedTokenType) params.push(['requested_token_type', p.requestedTokenType]);
  // Section 2.1: audience and resource MAY each appear more than once.
  for (const a of p.audience ?? []) params.push(['audience', a]);
  for (const r of p.resource ?? []) params.push(['resource', r]);
  if (p.scope) params.push(['scope', p.scope]);
  if (p.actorToken) {
    // Section 2.1: actor_token_type is REQUIRED when actor_token is present.
    if (!p.actorTokenType) throw new TypeError('actorTokenType is required with actorToken (RFC 8693 section 2.1)');
    params.push(['actor_token', p.actorToken], ['actor_token_type', p.actorTokenType]);
  }
  if (p.options && Object.keys(p.options).length > 0) params.push(['options', JSON.stringify(p.options)]);
  return params;
}

export async function encodeTokenRequest(
  p: ExchangeParams,
  encoding: RequestEncoding,
  clientAuth: ClientAuth,
  jsonFieldNames: JsonFieldNames = 'camelCase',
): Promise<EncodedTokenRequest> {
  const parts: TokenRequestParts = { headers: { accept: 'application/json' }, params: exchangeParameters(p) };
  await clientAuth.apply(parts);
  if (encoding === 'form') {
    parts.headers['content-type'] = 'application/x-www-form-urlencoded';
    return { headers: parts.headers, body: new URLSearchParams(parts.params).toString() };
  }
  parts.headers['content-type'] = 'application/json';
  return { headers: parts.headers, body: JSON.stringify(toJsonObject(parts.params, jsonFieldNames)) };
}

/** Repeated keys become arrays; single values stay strings (Google's audience is a string). */
function toJsonObject(params: Array<[string, string]>, names: JsonFieldNames): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [rawKey, value] of params) {
    const key = names === 'camelCase' ? rawKey.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()) : rawKey;
    const existing = out[key];
    if (existing === undefined) out[key] = value;
    else out[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return out;
}

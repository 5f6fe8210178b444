/**
 * Turning normalised token request parameters into a validated, frozen
 * `TokenExchangeRequest` (RFC 8693 section 2.1). Everything past this point trusts it.
 * What a server can issue (requested_token_type) is its own business and checked by
 * the caller. Descriptions never echo request values: any of them could be a token.
 */
import { OAuthError } from './oauth-error.js';
import type { TokenParams } from './request-parsing.js';
import { GRANT_TYPE_TOKEN_EXCHANGE } from './urns.js';

/** RFC 8693 section 2.1: the only grant type a token-exchange endpoint accepts. */
export { GRANT_TYPE_TOKEN_EXCHANGE };

export interface TokenExchangeRequest {
  readonly subjectToken: string;
  readonly subjectTokenType: string;
  /** As sent; undefined when the client did not ask for a type. */
  readonly requestedTokenType: string | undefined;
  readonly audience: readonly string[];
  readonly resource: readonly string[];
  /** Scope tokens, de-duplicated, in request order (RFC 6749 section 3.3). */
  readonly scope: readonly string[];
  readonly actor?: { readonly token: string; readonly tokenType: string };
}

const MAX_TARGET_LENGTH = 2048;

export interface ParseOptions {
  /**
   * Accept a `resource` that is a plain name (validated like an audience) instead of an
   * absolute URI. grpc-go's credentials/sts sends its one `-stsaudience` value as both
   * audience and resource, and the seed sets it to a bare `host:port` or `localhost`; the
   * sidecar's local endpoint serves that real client, the reference STS stays strict.
   */
  readonly lenientResource?: boolean;
}

export function parseTokenExchangeRequest(params: TokenParams, options: ParseOptions = {}): TokenExchangeRequest {
  const grantType = single(params, 'grant_type');
  if (grantType === undefined) {
    throw new OAuthError('invalid_request', 'missing grant_type (RFC 6749 section 4.1.3)');
  }
  if (grantType !== GRANT_TYPE_TOKEN_EXCHANGE) {
    throw new OAuthError('unsupported_grant_type', `only grant_type ${GRANT_TYPE_TOKEN_EXCHANGE} is supported`);
  }

  const subjectToken = required(params, 'subject_token');
  const subjectTokenType = required(params, 'subject_token_type');
  const requestedTokenType = single(params, 'requested_token_type');

  // RFC 8693 section 2.1: actor_token_type is REQUIRED with actor_token and MUST NOT appear without it.
  const actorToken = single(params, 'actor_token');
  const actorTokenType = single(params, 'actor_token_type');
  if (actorToken !== undefined && actorTokenType === undefined) {
    throw new OAuthError('invalid_request', 'actor_token_type is required when actor_token is present (RFC 8693 section 2.1)');
  }
  if (actorToken === undefined && actorTokenType !== undefined) {
    throw new OAuthError('invalid_request', 'actor_token_type must not be sent without actor_token (RFC 8693 section 2.1)');
  }

  validateOptions(single(params, 'options'));

  const request: TokenExchangeRequest = {
    subjectToken,
    subjectTokenType,
    requestedTokenType,
    audience: Object.freeze((params.get('audience') ?? []).map(validateAudience)),
    resource: Object.freeze((params.get('resource') ?? []).map(options.lenientResource ? validateLenientResource : validateResource)),
    scope: Object.freeze(parseScope(single(params, 'scope'))),
    ...(actorToken !== undefined && actorTokenType !== undefined
      ? { actor: Object.freeze({ token: actorToken, tokenType: actorTokenType }) }
      : {}),
  };
  return Object.freeze(request);
}

function single(params: TokenParams, name: string): string | undefined {
  // The parser already refused repetitions of single-valued parameters.
  return params.get(name)?.[0];
}

function required(params: TokenParams, name: string): string {
  const value = single(params, name);
  if (value === undefined) throw new OAuthError('invalid_request', `missing ${name} (RFC 8693 section 2.1)`);
  return value;
}

/**
 * RFC 8693 section 2.1: audience is a logical name of the target service, an
 * absolute URI or a plain name (Google uses `//iam.googleapis.com/...`, which is
 * neither, so only whitespace, controls and excessive length are refused).
 */
function validateAudience(value: string): string {
  if (value.length > MAX_TARGET_LENGTH || /[\s\x00-\x1F\x7F]/.test(value)) {
    throw new OAuthError('invalid_target', 'audience must be a URI or a name without whitespace (RFC 8693 section 2.1)');
  }
  return value;
}

/**
 * RFC 8693 section 2.1 (and RFC 8707 section 2): resource MUST be an absolute
 * URI and MUST NOT include a fragment component.
 */
function validateResource(value: string): string {
  const absolute =
    value.length <= MAX_TARGET_LENGTH &&
    /^[A-Za-z][A-Za-z0-9+.-]*:/.test(value) &&
    !/[\s\x00-\x1F\x7F]/.test(value) &&
    URL.canParse(value);
  if (!absolute) {
    throw new OAuthError('invalid_target', 'resource must be an absolute URI (RFC 8693 section 2.1)');
  }
  if (value.includes('#')) {
    throw new OAuthError('invalid_target', 'resource must not include a fragment (RFC 8693 section 2.1)');
  }
  return value;
}

/** An absolute URI as RFC 8693 asks, or else a name held to the audience rules. */
function validateLenientResource(value: string): string {
  return /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value) ? validateResource(value) : validateAudience(value);
}

/** RFC 6749 section 3.3: space-delimited scope-tokens of %x21 / %x23-5B / %x5D-7E. */
function parseScope(value: string | undefined): string[] {
  if (value === undefined) return [];
  const tokens = value.split(' ').filter((t) => t !== '');
  for (const token of tokens) {
    if (!/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(token)) {
      throw new OAuthError('invalid_scope', 'scope is malformed (RFC 6749 section 3.3)');
    }
  }
  return [...new Set(tokens)];
}

/**
 * Google STS v1/token `options`: "a serialized JSON object". Accepted and ignored,
 * but a value that is not a JSON object is a malformed request.
 */
function validateOptions(value: string | undefined): void {
  if (value === undefined) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new OAuthError('invalid_request', 'options must be a JSON-encoded object');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new OAuthError('invalid_request', 'options must be a JSON-encoded object');
  }
}

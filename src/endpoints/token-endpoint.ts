/**
 * The local RFC 8693 token endpoint (issue 6): an app's own auth library (gRPC STS call
 * credentials, google-auth-library's external-account client, ...) POSTs a
 * token-exchange request; the sidecar picks a route and answers from its cache per
 * section 2.2.1, or with an RFC 6749 section 5.2 error. The caller's subject token only
 * proves who is asking (`callers: pod-token`); the sidecar always exchanges its own.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OAuthError } from '../oauth/oauth-error.js';
import { readTokenParams } from '../oauth/request-parsing.js';
import { parseTokenExchangeRequest, type TokenExchangeRequest } from '../oauth/token-exchange-request.js';
import type { CachedToken } from '../cache/cached-token.js';
import { RequestRecord, type EndpointContext } from './context.js';
import { NO_STORE, describeTokenFailure, dpopBoundRefusal, remainingSeconds, sendJson, splitUrl, tokenTypeForClient } from './reply.js';
import { hostAllowed } from './request-guards.js';
import { selectRoute, type ServableRoute } from './route-selection.js';

export interface TokenEndpointOptions {
  readonly routes: readonly ServableRoute[];
  readonly defaultRoute?: string | undefined;
  /**
   * Present for `callers: pod-token`: true when the presented subject token is the pod's own;
   * asked again with the selected route, whose own subject token it must be (issue 13).
   */
  readonly isPodToken?: ((subjectToken: string, route?: string) => boolean) | undefined;
  readonly maxBodyBytes?: number;
}

/** Google's v1/token path too, so a `token_url` copied from a credential file only needs its origin changed. */
const TOKEN_PATHS: ReadonlySet<string> = new Set(['/token', '/v1/token']);
const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

export function createTokenEndpointHandler(options: TokenEndpointOptions, ctx: EndpointContext): (req: IncomingMessage, res: ServerResponse) => void {
  const defaultRoute = options.routes.find((r) => r.name === options.defaultRoute);
  if (options.defaultRoute !== undefined && !defaultRoute) throw new TypeError(`defaultRoute "${options.defaultRoute}" is not a route`);
  const now = ctx.now ?? Date.now;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;

  async function handle(req: IncomingMessage, res: ServerResponse, record: RequestRecord): Promise<void> {
    if (!TOKEN_PATHS.has(splitUrl(req.url).path)) {
      throw new OAuthError('invalid_request', 'no such endpoint; POST token requests to /token', { status: 404 });
    }
    if (!hostAllowed(req.headers.host)) {
      throw new OAuthError('invalid_request', 'address this endpoint by IP address or localhost', { status: 403 });
    }
    if (req.method !== 'POST') {
      // RFC 6749 section 3.2: the client MUST use POST at the token endpoint.
      throw new OAuthError('invalid_request', 'the token endpoint accepts POST only (RFC 6749 section 3.2)', { status: 405, headers: { allow: 'POST' } });
    }
    const request = parseTokenExchangeRequest(await readTokenParams(req, maxBodyBytes), { lenientResource: true });
    // Who is asking comes first: an unauthorised caller learns nothing about the routes.
    if (options.isPodToken && !options.isPodToken(request.subjectToken)) {
      throw new OAuthError('invalid_grant', "subject_token is not this pod's token (RFC 6749 section 5.2)");
    }
    if (request.actor) {
      // The sidecar exchanges with its own configured actor token; it cannot act for this one.
      throw new OAuthError('invalid_request', 'actor_token is not supported by this endpoint');
    }
    const route = selectRoute(options.routes, request, defaultRoute);
    if (!route) {
      throw new OAuthError('invalid_target', 'no route serves the requested audience, resource or scope, and no defaultRoute is set (RFC 8693 section 2.2.2)');
    }
    record.route = route.name;
    if (options.isPodToken && !options.isPodToken(request.subjectToken, route.name)) {
      throw new OAuthError('invalid_grant', "subject_token is not the subject token of the route serving this request (RFC 6749 section 5.2)");
    }
    checkTokenType(request, route);
    let token: CachedToken;
    try {
      token = await ctx.tokens.getToken(route.name);
    } catch (err) {
      const failure = describeTokenFailure(err, route.name);
      record.failed(failure.code, failure.description);
      return sendJson(res, failure.status, { error: failure.error, error_description: failure.description }, NO_STORE);
    }
    const bound = dpopBoundRefusal(token, route.name);
    if (bound) {
      record.failed(bound.code, bound.description);
      return sendJson(res, bound.status, { error: bound.error, error_description: bound.description }, NO_STORE);
    }
    const scope = token.scope ?? (route.scope.length > 0 ? route.scope.join(' ') : undefined);
    // RFC 8693 section 2.2.1; expires_in is what the cached token has left, not its original lifetime.
    sendJson(
      res,
      200,
      {
        access_token: token.accessToken,
        issued_token_type: token.issuedTokenType,
        token_type: tokenTypeForClient(token),
        expires_in: remainingSeconds(token, now()),
        ...(scope ? { scope } : {}),
      },
      NO_STORE,
    );
  }

  return (req, res) => {
    const record = new RequestRecord(ctx, 'token', req, res);
    handle(req, res, record).catch((err: unknown) => {
      const oauth = err instanceof OAuthError ? err : new OAuthError('server_error', 'internal error', { cause: err });
      record.failed(oauth.error, oauth.message, err instanceof OAuthError ? undefined : err);
      const headers: Record<string, string> = { ...NO_STORE, ...oauth.headers };
      // After a 413 the rest of the body is unread: close rather than drain it.
      if (oauth.status === 413) headers['connection'] = 'close';
      sendJson(res, oauth.status, oauth.toJSON(), headers);
    });
  };
}

/** RFC 8693 section 2.1: a type the route does not issue cannot be honoured by this route. */
function checkTokenType(request: TokenExchangeRequest, route: ServableRoute): void {
  if (request.requestedTokenType !== undefined && request.requestedTokenType !== route.requestedTokenType) {
    throw new OAuthError('invalid_request', `requested_token_type differs from the type route ${route.name} issues (${route.requestedTokenType})`);
  }
}

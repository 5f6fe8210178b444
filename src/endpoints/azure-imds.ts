/**
 * Azure IMDS managed-identity emulation (issue 6), for @azure/identity's
 * ManagedIdentityCredential (via MSAL) and other Azure SDKs when
 * AZURE_POD_IDENTITY_AUTHORITY_HOST points here. One path,
 * GET /metadata/identity/oauth2/token (MSAL appends a trailing slash), answering from
 * the route mapped to the requested `resource`.
 *
 * As IMDS: `Metadata: true` is required (400 without), X-Forwarded-For is refused, and
 * the reply's numbers are strings. `expires_on` (epoch seconds) is always sent: MSAL
 * derives the token's lifetime from it and treats a token without it as expired.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CachedToken } from '../cache/cached-token.js';
import { RequestRecord, type EndpointContext } from './context.js';
import { NO_STORE, describeTokenFailure, dpopBoundRefusal, remainingSeconds, sendJson, splitUrl } from './reply.js';
import { hostAllowed, wasForwarded } from './request-guards.js';

export interface AzureImdsOptions {
  /** IMDS `resource` -> route name. */
  readonly resources: Readonly<Record<string, string>>;
  readonly defaultRoute?: string | undefined;
  /** The identity's client id; requests naming another are refused. */
  readonly clientId?: string | undefined;
}

const TOKEN_PATH = '/metadata/identity/oauth2/token';

export function createAzureImdsHandler(options: AzureImdsOptions, ctx: EndpointContext): (req: IncomingMessage, res: ServerResponse) => void {
  const now = ctx.now ?? Date.now;
  // "https://management.azure.com/" and "https://management.azure.com" name the same
  // resource (the CLI sends one, the SDK's ".default" scope the other).
  const resources = new Map(Object.entries(options.resources).map(([resource, route]) => [normalizeResource(resource), route]));

  async function handle(req: IncomingMessage, res: ServerResponse, record: RequestRecord): Promise<void> {
    const { path, query } = splitUrl(req.url);
    const refuse = (status: number, error: string, description: string, headers: Record<string, string> = {}) => {
      record.failed(error, description);
      sendJson(res, status, { error, error_description: description }, { ...NO_STORE, ...headers });
    };
    const normalizedPath = path.toLowerCase().replace(/\/$/, '');
    if (normalizedPath !== TOKEN_PATH) return refuse(404, 'not_found', `only ${TOKEN_PATH} is served`);
    if (!hostAllowed(req.headers.host)) return refuse(403, 'invalid_request', 'address this endpoint by IP address or localhost');
    if (wasForwarded(req.headers)) return refuse(400, 'invalid_request', 'requests carrying X-Forwarded-For are refused');
    if (req.method !== 'GET') return refuse(405, 'invalid_request', 'use GET', { allow: 'GET' });
    const metadata = req.headers['metadata'];
    if (typeof metadata !== 'string' || metadata.toLowerCase() !== 'true') return refuse(400, 'invalid_request', 'Required metadata header not specified');
    if (!query.get('api-version')) return refuse(400, 'invalid_request', "Required query variable 'api-version' is missing");
    const resource = query.get('resource');
    if (!resource) return refuse(400, 'invalid_request', "Required query variable 'resource' is missing");
    // One identity: it can be named by client_id only, and only by its own.
    if (query.has('object_id') || query.has('msi_res_id') || query.has('mi_res_id')) {
      return refuse(400, 'invalid_request', 'Identity not found (select the identity by client_id)');
    }
    const clientId = query.get('client_id');
    if (clientId && options.clientId !== undefined && clientId.toLowerCase() !== options.clientId.toLowerCase()) {
      return refuse(400, 'invalid_request', 'Identity not found');
    }
    const route = resources.get(normalizeResource(resource)) ?? options.defaultRoute;
    // 400, not 404: the Azure SDK retries 404 from IMDS for up to a minute.
    if (route === undefined) return refuse(400, 'invalid_resource', 'no route is configured for this resource and there is no defaultRoute');
    record.route = route;
    let token: CachedToken;
    try {
      token = await ctx.tokens.getToken(route);
    } catch (err) {
      const failure = describeTokenFailure(err, route);
      record.failed(failure.code, failure.description);
      return sendJson(res, failure.status, { error: failure.error, error_description: failure.description }, NO_STORE);
    }
    const bound = dpopBoundRefusal(token, route);
    if (bound) {
      record.failed(bound.code, bound.description);
      return sendJson(res, bound.status, { error: bound.error, error_description: bound.description }, NO_STORE);
    }
    const t = now();
    const expiresIn = remainingSeconds(token, t);
    const expiresOn = Math.floor(t / 1000) + expiresIn;
    sendJson(
      res,
      200,
      {
        access_token: token.accessToken,
        ...(options.clientId !== undefined ? { client_id: options.clientId } : {}),
        expires_in: String(expiresIn),
        expires_on: String(expiresOn),
        ext_expires_in: String(expiresIn),
        not_before: String(Math.floor(token.issuedAt / 1000)),
        resource,
        token_type: 'Bearer',
      },
      NO_STORE,
    );
  }

  return (req, res) => {
    const record = new RequestRecord(ctx, 'azure', req, res);
    handle(req, res, record).catch((err: unknown) => {
      record.failed('internal', 'IMDS request failed', err);
      sendJson(res, 500, { error: 'server_error', error_description: 'internal error' }, NO_STORE);
    });
  };
}

function normalizeResource(resource: string): string {
  return resource.replace(/\/+$/, '');
}

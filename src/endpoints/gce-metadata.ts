/**
 * GCE metadata server emulation (issue 6), for google-auth-library, gcp-metadata and the
 * other Google SDKs when GCE_METADATA_HOST points here: the service-account token from one
 * route's cache, the account's e-mail and the project's ids. Only the paths those
 * libraries read are served; anything else is 404, as the real server does for an
 * unknown key.
 *
 * As on GCE: every request but the root probe must carry `Metadata-Flavor: Google` (403
 * without), none may carry X-Forwarded-For, and every reply says `Metadata-Flavor: Google`
 * (gcp-metadata rejects a reply without it).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CachedToken } from '../cache/cached-token.js';
import { RequestRecord, type EndpointContext } from './context.js';
import { describeTokenFailure, dpopBoundRefusal, remainingSeconds, sendJson, sendText, splitUrl } from './reply.js';
import { hostAllowed, wasForwarded } from './request-guards.js';

export interface GceMetadataOptions {
  readonly route: string;
  /** The route's scope tokens, listed at .../scopes. */
  readonly scopes: readonly string[];
  readonly projectId: string;
  readonly numericProjectId?: string | undefined;
  readonly serviceAccountEmail: string;
  readonly universeDomain: string;
}

const FLAVOR = { 'metadata-flavor': 'Google' } as const;
const NO_STORE_FLAVOR = { ...FLAVOR, 'cache-control': 'no-store' } as const;
/** The real server's content type for plain values and directory listings. */
const TEXT = 'application/text';
const BASE = '/computeMetadata/v1';
/** Names the metadata server is reached by on GCE; a pod may alias them to the sidecar. */
const METADATA_NAMES: ReadonlySet<string> = new Set(['metadata.google.internal', 'metadata']);

export function createGceMetadataHandler(options: GceMetadataOptions, ctx: EndpointContext): (req: IncomingMessage, res: ServerResponse) => void {
  const now = ctx.now ?? Date.now;
  const accounts = new Set(['default', options.serviceAccountEmail]);
  const values = new Map<string, string>([
    [`${BASE}/project/project-id`, options.projectId],
    [`${BASE}/universe/universe-domain`, options.universeDomain],
  ]);
  if (options.numericProjectId !== undefined) values.set(`${BASE}/project/numeric-project-id`, options.numericProjectId);
  const directories = new Map<string, string>([
    ['/computeMetadata', 'v1/\n'],
    [BASE, 'instance/\nproject/\nuniverse/\n'],
    [`${BASE}/instance`, 'service-accounts/\n'],
    [`${BASE}/instance/service-accounts`, `default/\n${options.serviceAccountEmail}/\n`],
    [`${BASE}/project`, `${options.numericProjectId !== undefined ? 'numeric-project-id\n' : ''}project-id\n`],
    [`${BASE}/universe`, 'universe-domain\n'],
  ]);

  async function serveToken(res: ServerResponse, record: RequestRecord): Promise<void> {
    record.route = options.route;
    let token: CachedToken;
    try {
      token = await ctx.tokens.getToken(options.route);
    } catch (err) {
      const failure = describeTokenFailure(err, options.route);
      record.failed(failure.code, failure.description);
      return sendText(res, failure.status, `${failure.description}\n`, NO_STORE_FLAVOR, TEXT);
    }
    const bound = dpopBoundRefusal(token, options.route);
    if (bound) {
      record.failed(bound.code, bound.description);
      return sendText(res, bound.status, `${bound.description}\n`, NO_STORE_FLAVOR, TEXT);
    }
    // The `scopes` query is accepted and not used, as GKE's metadata server does: the
    // route's token is what this sidecar holds. expires_in is an integer on GCE too.
    sendJson(res, 200, { access_token: token.accessToken, expires_in: remainingSeconds(token, now()), token_type: 'Bearer' }, NO_STORE_FLAVOR);
  }

  function serveAccount(key: string, query: URLSearchParams, res: ServerResponse, record: RequestRecord): Promise<void> | void {
    switch (key) {
      case 'token':
        return serveToken(res, record);
      case 'email':
        return sendText(res, 200, options.serviceAccountEmail, FLAVOR, TEXT);
      case 'aliases':
        return sendText(res, 200, 'default\n', FLAVOR, TEXT);
      case 'scopes':
        return sendText(res, 200, options.scopes.map((s) => `${s}\n`).join(''), FLAVOR, TEXT);
      case '':
        if (query.get('recursive') === 'true') {
          return sendJson(res, 200, { aliases: ['default'], email: options.serviceAccountEmail, scopes: options.scopes }, FLAVOR);
        }
        return sendText(res, 200, 'aliases\nemail\nscopes\ntoken\n', FLAVOR, TEXT);
      default:
        return notFound(res);
    }
  }

  function dispatch(req: IncomingMessage, res: ServerResponse, record: RequestRecord): Promise<void> | void {
    const { path, query } = splitUrl(req.url);
    if (!hostAllowed(req.headers.host, METADATA_NAMES)) return refuse(res, record, 403, 'host_refused', 'address the metadata server by IP address, localhost or metadata.google.internal');
    if (wasForwarded(req.headers)) return refuse(res, record, 403, 'forwarded', 'requests carrying X-Forwarded-For are refused');
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, record, 405, 'method', 'use GET', { allow: 'GET, HEAD' });
    // The root probe carries no metadata, and Go's metadata.OnGCE sends it without the header.
    if (path === '/') return sendText(res, 200, 'computeMetadata/\n', FLAVOR, TEXT);
    if (req.headers['metadata-flavor'] !== 'Google') {
      return refuse(res, record, 403, 'missing_metadata_flavor', 'Missing Metadata-Flavor:Google header.');
    }
    const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
    const listing = directories.get(trimmed);
    if (listing !== undefined) return sendText(res, 200, listing, FLAVOR, TEXT);
    const value = values.get(trimmed);
    if (value !== undefined) return sendText(res, 200, value, FLAVOR, TEXT);
    const account = /^\/computeMetadata\/v1\/instance\/service-accounts\/([^/]+)(?:\/([^/]*))?\/?$/.exec(path);
    if (account && accounts.has(decodeSegment(account[1] ?? ''))) return serveAccount(account[2] ?? '', query, res, record);
    return notFound(res);
  }

  return (req, res) => {
    const record = new RequestRecord(ctx, 'gce', req, res);
    Promise.resolve()
      .then(() => dispatch(req, res, record))
      .catch((err: unknown) => {
        record.failed('internal', 'metadata request failed', err);
        sendText(res, 500, 'internal error\n', NO_STORE_FLAVOR, TEXT);
      });
  };
}

function refuse(res: ServerResponse, record: RequestRecord, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  record.failed(code, message);
  sendText(res, status, `${message}\n`, { ...FLAVOR, ...headers }, TEXT);
}

function notFound(res: ServerResponse): void {
  sendText(res, 404, 'Not Found\n', FLAVOR, TEXT);
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // malformed escapes name no account: 404 below
  }
}

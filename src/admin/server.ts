/**
 * The admin listener: /metrics, /healthz (alive), /readyz (ready to inject tokens), /status
 * (what the sidecar is doing: JSON, or a text table for `Accept: text/plain`; status.ts).
 *
 * Readiness: every eager route (lazy: false, the default) holds a token that may be
 * injected now. Lazy routes exchange on first use and never gate readiness. The JSON
 * shows per-route state, never a token.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { RouteTokenStatus } from '../cache/token-provider.js';
import { sendJson, sendText } from '../http/reply.js';
import type { StatusReport } from './status.js';
import { statusText } from './status-text.js';

const NO_STORE = { 'cache-control': 'no-store' } as const;

export interface AdminOptions {
  readonly registry: Registry;
  readonly tokenStatus: () => RouteTokenStatus[];
  /** False while shutting down: readiness fails first so traffic drains away. */
  readonly accepting: () => boolean;
  /** The /status report; without it /status is 404. */
  readonly status?: () => StatusReport;
}

const PATHS = ['/metrics', '/healthz', '/readyz', '/status'];

export function createAdminHandler(options: AdminOptions): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' });
    switch (path) {
      case '/metrics':
        options.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': options.registry.contentType, 'cache-control': 'no-store' });
            res.end(text);
          },
          () => json(res, 500, { error: 'metrics collection failed' }),
        );
        return;
      case '/healthz':
        return json(res, 200, { status: 'ok' });
      case '/readyz': {
        const routes = options.tokenStatus().map((s) => ({
          route: s.route,
          lazy: s.lazy,
          valid: s.valid,
          expiresInSeconds: s.expiresInSeconds === undefined ? null : Math.floor(s.expiresInSeconds),
          consecutiveFailures: s.consecutiveFailures,
          lastErrorCode: s.lastErrorCode ?? null,
        }));
        const accepting = options.accepting();
        const ready = accepting && routes.every((r) => r.lazy || r.valid);
        return json(res, ready ? 200 : 503, { ready, shuttingDown: !accepting, routes });
      }
      case '/status':
        if (!options.status) return notFound(res, options);
        if (wantsText(req.headers.accept)) return sendText(res, 200, statusText(options.status()), NO_STORE);
        return json(res, 200, options.status());
      default:
        return notFound(res, options);
    }
  };
}

function notFound(res: ServerResponse, options: AdminOptions): void {
  json(res, 404, { error: 'not found', paths: options.status ? PATHS : PATHS.filter((p) => p !== '/status') });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  sendJson(res, status, body, NO_STORE);
}

/**
 * Content negotiation for /status (RFC 9110 12.5.1), reduced to its two choices: text when
 * `text/plain` has a higher weight than JSON (`application/json`, `application/*`, any);
 * JSON otherwise, and when no Accept is sent.
 */
export function wantsText(accept: string | undefined): boolean {
  if (!accept) return false;
  let text = 0;
  let jsonQ = 0;
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';').map((p) => p.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    if (!Number.isFinite(q)) continue;
    if (type === 'text/plain' || type === 'text/*') text = Math.max(text, q);
    if (type === 'application/json' || type === 'application/*') jsonQ = Math.max(jsonQ, q);
    if (type === '*/*') jsonQ = Math.max(jsonQ, q);
  }
  return text > jsonQ;
}

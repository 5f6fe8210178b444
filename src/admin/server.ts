/**
 * The admin listener: /metrics, /healthz (alive), /readyz (ready to inject tokens).
 *
 * Readiness: every eager route (lazy: false, the default) holds a token that may be
 * injected now. Lazy routes exchange on first use and never gate readiness. The JSON
 * shows per-route state, never a token.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { RouteTokenStatus } from '../cache/token-provider.js';
import { sendJson } from '../http/reply.js';

const NO_STORE = { 'cache-control': 'no-store' } as const;

export interface AdminOptions {
  readonly registry: Registry;
  readonly tokenStatus: () => RouteTokenStatus[];
  /** False while shutting down: readiness fails first so traffic drains away. */
  readonly accepting: () => boolean;
}

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
      default:
        return json(res, 404, { error: 'not found', paths: ['/metrics', '/healthz', '/readyz'] });
    }
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  sendJson(res, status, body, NO_STORE);
}

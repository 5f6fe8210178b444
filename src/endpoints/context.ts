/**
 * What every local endpoint (issue 6) is handed: the TokenProvider, never the STS client,
 * plus logs and metrics hooks. Observation is per request: one metrics sample and, at
 * debug, one log line when the response closes; failures at warn, throttled per
 * endpoint, route and code like the proxy's.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TokenProvider } from '../cache/token-provider.js';
import type { Logger } from '../log/logger.js';
import type { LogThrottle } from '../log/throttle.js';

export type EndpointName = 'token' | 'gce' | 'azure';

export interface EndpointObserver {
  /** Once per request; `route` is undefined when none was chosen (refused before routing). */
  finished(endpoint: EndpointName, route: string | undefined, statusCode: number, seconds: number): void;
}

export interface EndpointContext {
  readonly tokens: Pick<TokenProvider, 'getToken'>;
  readonly logger: Logger;
  readonly observer: EndpointObserver;
  readonly failureLogs: LogThrottle;
  /** Clock for expires_in / expires_on (tests may pin it). */
  readonly now?: () => number;
}

/** Per-request bookkeeping: which route served it, reported when the response closes. */
export class RequestRecord {
  route: string | undefined;
  readonly #started = performance.now();

  constructor(
    private readonly ctx: EndpointContext,
    private readonly endpoint: EndpointName,
    req: IncomingMessage,
    res: ServerResponse,
  ) {
    res.once('close', () => {
      const seconds = (performance.now() - this.#started) / 1000;
      ctx.observer.finished(endpoint, this.route, res.statusCode, seconds);
      if (ctx.logger.isLevelEnabled('debug')) {
        // The path only: an Azure query names the resource and client_id, harmless but noisy.
        const path = (req.url ?? '').split('?', 1)[0];
        ctx.logger.debug({ endpoint, route: this.route ?? null, method: req.method, path, status: res.statusCode, ms: +(seconds * 1000).toFixed(3) }, 'endpoint request');
      }
    });
  }

  /**
   * A refused request, logged at warn at most once per endpoint, route and code per
   * throttle window. `detail` must be our own words or scrubbed text: never a token.
   */
  failed(code: string, detail: string, err?: unknown): void {
    const route = this.route ?? null;
    const suppressed = this.ctx.failureLogs.admit(`${this.endpoint} ${route} ${code}`);
    if (suppressed === undefined) return;
    this.ctx.logger.warn({ endpoint: this.endpoint, route, code, detail, suppressed, ...(err === undefined ? {} : { err }) }, 'endpoint request refused');
  }
}

/**
 * What every stage of the request pipeline shares: the route a resolver chose, and the
 * sidecar's token provider, logger and observer. The proxy sees only the TokenProvider
 * interface, never the STS.
 */
import type { TokenProvider } from '../cache/token-provider.js';
import type { NonceStore } from '../dpop/nonces.js';
import type { GrpcStatusLabel } from './h2/grpc.js';
import type { Logger } from '../log/logger.js';
import type { LogThrottle } from '../log/throttle.js';
import type { RoutableRoute } from './routing.js';
import type { Upstream } from './upstream.js';

export interface ProxyRoute extends RoutableRoute {
  readonly upstream: Upstream;
  /** Lower-case header name carrying the token. */
  readonly tokenHeader: string;
  /** e.g. "Bearer"; empty sends the bare token. */
  readonly tokenScheme: string;
  readonly replaceExisting: boolean;
  /** Send the route's configured `host` upstream instead of the upstream's own authority. */
  readonly preserveHost: boolean;
}

/**
 * How a request ended, for metrics and logs: the status the app got, or `aborted` when its
 * response never completed (the app hung up, or the connection was cut at the end of the
 * drain): counting those by the status in the head would call them successes (issue 10 item 18).
 */
export type ProxyOutcome = number | 'aborted';

/** The protocol a request arrived in: HTTP/1.x, or HTTP/2 (issue 12). */
export type InboundProtocol = 'h1' | 'h2';

/** What else the metrics tell requests apart by; every value from a closed set. */
export interface RequestDetail {
  readonly protocol: InboundProtocol;
  /** The gRPC status the app got (`none` for a request that is not gRPC). */
  readonly grpcStatus: GrpcStatusLabel;
}

export interface ProxyObserver {
  /** Called once per request or upgrade that reached a route or was refused (`route` is "unmatched" then). */
  finished(route: string, outcome: ProxyOutcome, seconds: number, detail?: RequestDetail): void;
  retriedAfter401?(route: string): void;
}

export interface ProxyContext {
  readonly tokens: TokenProvider;
  readonly logger: Logger;
  readonly observer: ProxyObserver;
  /** Keeps per-request failure logs to one line per route and code every few seconds. */
  readonly failureLogs: LogThrottle;
  /** The `DPoP-Nonce` each upstream origin last sent (RFC 9449 section 9); the pipeline makes one when absent. */
  readonly dpopNonces?: NonceStore;
}

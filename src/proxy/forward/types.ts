/**
 * Shapes shared by the forward-proxy files: a route as the forward proxy sees it, and the
 * observer that counts its decisions (bounded label values, never a destination).
 */
import type { ProxyRoute } from '../context.js';

export interface ForwardRoute extends ProxyRoute {
  /** Terminate CONNECT tunnels to this route's host with a leaf from the interception CA. */
  readonly intercept: boolean;
}

/** absolute: `GET http://host/..` on the proxy listener; connect: a CONNECT; tunnel_request: a request parsed inside a tunnel. */
export type ForwardKind = 'absolute' | 'connect' | 'tunnel_request';

/**
 * routed: handed to a route (token injected, or the usual 503 when none can be had);
 * passthrough: forwarded to its destination without a token; denied: 403 under `unmatched: deny`;
 * invalid: a target the proxy cannot use (400); for CONNECT also http (plain HTTP parsed inside),
 * intercepted, not_intercepted (routed host, TLS passed untouched: no token), tunnelled (no
 * route, untouched) and unreachable (the destination refused the connection); loop: the
 * destination is the sidecar itself (508, issue 10 item 10).
 */
export type ForwardResult =
  | 'routed'
  | 'passthrough'
  | 'denied'
  | 'invalid'
  | 'http'
  | 'intercepted'
  | 'not_intercepted'
  | 'tunnelled'
  | 'unreachable'
  | 'loop';

export interface ForwardObserver {
  forwarded(kind: ForwardKind, result: ForwardResult): void;
}

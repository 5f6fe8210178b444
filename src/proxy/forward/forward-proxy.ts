/**
 * The forward proxy on `proxy.listen` (issue 4), for apps that honour http_proxy/HTTPS_PROXY:
 * absolute-form requests and CONNECT tunnels. Its resolver matches a destination (the
 * absolute-form target's, or the tunnel's) instead of a Host header; every request and upgrade
 * that reaches a route then goes through the one pipeline (pipeline.ts: token, header handling,
 * 401 policy, errors, the route's upstream and its TLS), so the forward proxy adds only the
 * choice of route and what happens to unrouted traffic.
 *
 * A token is only ever added by a route, and a route only sends to its configured upstream:
 * a destination no route matches gets the request without a token (or a 403 under
 * `forward.unmatched: deny`). Redirects are answered to the app, never followed.
 */
import { createServer } from 'node:http';
import type { Http2ServerRequest, ServerHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import { ForwardDeniedError, ForwardTargetError, PathRejectedError, type SidecarError } from '../../errors.js';
import type { Entry, InboundRequest, InboundResponse } from '../inbound.js';
import { createInboundH2 } from '../h2/server.js';
import { guardServer, httpServerOptions, NO_CONNECTION_OBSERVER, startTimeoutChecks, type ConnectionObserver, type ListenerLimits } from '../limits.js';
import type { ConnectListener } from '../listen.js';
import { upgradeEntry, type Pipeline } from '../pipeline.js';
import { normalizeRequestTarget } from '../request-path.js';
import { sendError } from '../respond.js';
import { RouteTable } from '../routing.js';
import { createConnectHandler } from './connect.js';
import { authority, DEFAULT_PORT, parseAbsoluteForm, type Destination, type Scheme } from './destination.js';
import type { DialPolicy } from './dial-policy.js';
import type { LeafCertificateCache } from './leaf-cache.js';
import { createPassthrough } from './passthrough.js';
import type { ForwardKind, ForwardObserver, ForwardRoute } from './types.js';

export interface ForwardProxyOptions {
  readonly routes: readonly ForwardRoute[];
  readonly pipeline: Pipeline;
  readonly unmatched: 'tunnel' | 'deny';
  /** Leaves for intercepted hosts; absent when no route intercepts. */
  readonly leaves?: LeafCertificateCache;
  readonly observer: ForwardObserver;
  /** How long a passed-through request may wait for the destination's response headers. */
  readonly passthroughHeadersTimeoutMs?: number;
  /** Where unrouted traffic may be relayed (issue 10 items 10, 11). */
  readonly policy: DialPolicy;
  /** The proxy listener's bounds, also for the HTTP parsed inside tunnels (issue 10 items 1, 2). */
  readonly limits: ListenerLimits;
  readonly connections?: ConnectionObserver;
}

export interface ForwardProxy {
  /**
   * Absolute-form requests and upgrades on the shared listener (shared-listener.ts sends them
   * here), matched by their destination only, never by a Host header.
   */
  readonly absolute: Entry;
  readonly connectListener: ConnectListener;
  close(): Promise<void>;
}

interface Tunnel {
  readonly scheme: Scheme;
  readonly destination: Destination;
}

export function createForwardProxy(options: ForwardProxyOptions): ForwardProxy {
  const { pipeline, observer } = options;
  const { ctx } = pipeline;
  const table = new RouteTable(options.routes);
  const passthrough = createPassthrough({ headersTimeoutMs: options.passthroughHeadersTimeoutMs ?? 300_000, policy: options.policy });
  const deny = options.unmatched === 'deny';

  /**
   * The route for a destination and path; on a match the request is rewritten for it. The path
   * is normalised before matching, and that form is what the route forwards (issue 10 item 7);
   * a path readers could disagree on throws PathRejectedError when a route serves the destination.
   */
  const routeFor = (req: InboundRequest, scheme: Scheme, destination: Destination, rawPath: string): ForwardRoute | undefined => {
    const defaultPort = DEFAULT_PORT[scheme];
    if (!table.forDestination(destination.name, destination.port, defaultPort)) return undefined;
    const path = normalizeRequestTarget(rawPath);
    const route = table.matchDestination(destination.name, destination.port, defaultPort, path);
    if (route) {
      // RFC 9112 3.2.2: the target's authority replaces any Host the app sent (inside a tunnel,
      // the CONNECT authority does: that is where the app asked to go). The route then sees an
      // origin-form request, exactly as on the reverse-proxy path.
      req.url = path;
      req.headers.host = authority(destination, scheme);
    }
    return route;
  };

  const forward = (req: InboundRequest, res: InboundResponse, kind: ForwardKind, scheme: Scheme, destination: Destination, path: string) => {
    let route: ForwardRoute | undefined;
    try {
      route = routeFor(req, scheme, destination, path);
    } catch (err) {
      if (err instanceof PathRejectedError) return invalid(res, kind, err);
      throw err;
    }
    if (route) {
      observer.forwarded(kind, 'routed');
      return pipeline.request(route, req, res);
    }
    const where = `${scheme}://${authority(destination, scheme)}`;
    if (ctx.logger.isLevelEnabled('debug')) ctx.logger.debug({ kind, destination: where, method: req.method, deny }, 'forward request matched no route');
    if (deny) {
      observer.forwarded(kind, 'denied');
      return sendError(res, new ForwardDeniedError(`no route for ${where}${path.split('?', 1)[0]} and forward.unmatched is deny`), undefined);
    }
    observer.forwarded(kind, 'passthrough');
    passthrough.forward(req, res, scheme, destination, path);
  };

  const invalid = (res: InboundResponse, kind: ForwardKind, err: SidecarError) => {
    observer.forwarded(kind, 'invalid');
    sendError(res, err, undefined);
  };

  /** A request parsed inside a tunnel, HTTP/1.1 or HTTP/2 alike. */
  const tunnelRequest = (tunnel: Tunnel | undefined, req: InboundRequest, res: InboundResponse) => {
    const url = req.url ?? '/';
    if (!tunnel) return void res.destroy();
    // RFC 9112 3.2.1: inside a tunnel the app talks to the origin, so origin-form only.
    if (!url.startsWith('/')) return invalid(res, 'tunnel_request', new ForwardTargetError('requests inside a CONNECT tunnel must use origin-form targets'));
    forward(req, res, 'tunnel_request', tunnel.scheme, tunnel.destination, url);
  };

  // Tunnels that carry HTTP/1.1 are parsed by this server: it never listens, the CONNECT
  // handler hands it sockets. Requests are matched against the tunnel's destination.
  const tunnels = new WeakMap<Duplex, Tunnel>();
  // Its sockets were counted (and capped) by the proxy listener that accepted them.
  const connections = options.connections ?? NO_CONNECTION_OBSERVER;
  const inner = createServer(httpServerOptions(options.limits));
  guardServer(inner, 'proxy', options.limits, connections, {
    admit: (req) => options.policy.admit(req),
    request: (req, res) => tunnelRequest(tunnels.get(req.socket), req, res),
    upgrade: upgradeEntry(pipeline, (req) => {
      const tunnel = tunnels.get(req.socket);
      const url = req.url ?? '/';
      return tunnel && url.startsWith('/') ? routeFor(req, tunnel.scheme, tunnel.destination, url) : undefined;
    }),
  });
  startTimeoutChecks(inner);

  // Tunnels that carry HTTP/2 (cleartext with prior knowledge, or `h2` negotiated on intercepted
  // TLS; issue 12): a session per tunnel, told apart by the session (a compat request's socket
  // is a proxy object, not the tunnel's socket).
  const sessionTunnels = new WeakMap<ServerHttp2Session, Tunnel>();
  const innerH2 = createInboundH2('proxy', options.limits, connections, {
    admit: (req) => options.policy.admit(req),
    request: (req, res) => tunnelRequest(sessionTunnels.get((req as Http2ServerRequest).stream.session as ServerHttp2Session), req, res),
  });

  const connectListener = createConnectHandler({
    table,
    unmatched: options.unmatched,
    leaves: options.leaves,
    ctx,
    observer,
    policy: options.policy,
    idleTimeoutMs: options.limits.idleTimeoutMs,
    serveHttp(socket, scheme, destination, protocol) {
      if (protocol === 'h2') return void sessionTunnels.set(innerH2.serve(socket), { scheme, destination });
      tunnels.set(socket, { scheme, destination });
      inner.emit('connection', socket);
    },
  });

  return {
    absolute: {
      request(req, res) {
        let target;
        try {
          target = parseAbsoluteForm(req.url ?? '');
        } catch (err) {
          return invalid(res, 'absolute', err as SidecarError);
        }
        forward(req, res, 'absolute', target.scheme, target.destination, target.path);
      },
      // An absolute-form upgrade is matched by its destination only (rewritten to origin-form on a match).
      upgrade: upgradeEntry(pipeline, (req) => {
        let target;
        try {
          target = parseAbsoluteForm(req.url ?? '');
        } catch {
          return undefined;
        }
        // A PathRejectedError reaches the upgrade entry, which answers 400.
        return routeFor(req, target.scheme, target.destination, target.path);
      }),
    },
    connectListener,
    async close() {
      inner.close();
      innerH2.closeSessions();
      await passthrough.close();
    },
  };
}

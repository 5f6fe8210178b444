/**
 * The one request pipeline (issue 11 item 3). Every entry finds a route with a resolver of its
 * own (reverse-proxy.ts: Host and path, or a route's own listener; forward/forward-proxy.ts: the
 * absolute-form or CONNECT destination) and hands the request here; from here on every entry
 * meets the same stages (exchange.ts). A request no route takes is answered and counted here too.
 */
import type { Duplex } from 'node:stream';
import { NonceStore } from '../dpop/nonces.js';
import { BadRequestError, RouteNotFoundError, SidecarError } from '../errors.js';
import type { ProxyContext, ProxyRoute } from './context.js';
import type { InboundListener, InboundRequest, InboundResponse, UpgradeListener } from './inbound.js';
import { recordUnrouted } from './outcome.js';
import { ProxiedRequest } from './proxied-request.js';
import { ProxiedUpgrade } from './proxied-upgrade.js';
import { sendError, sendErrorOnSocket } from './respond.js';

/**
 * The route for an inbound request, or undefined when none serves it. Rewrites `req.url` to
 * the normalised target first, so the route is matched on exactly what is forwarded (issue 10
 * item 7). Throws PathRejectedError (or another SidecarError) for a target it refuses.
 */
export type RouteResolver = (req: InboundRequest) => ProxyRoute | undefined;

export interface Pipeline {
  readonly ctx: ProxyContext;
  /** A routed request: method policy, injection, header policy, 401 policy, relay, outcome. */
  request(route: ProxyRoute, req: InboundRequest, res: InboundResponse): void;
  /** A routed upgrade: the same stages, then a 101 splice. */
  upgrade(route: ProxyRoute, req: InboundRequest, socket: Duplex, head: Buffer): void;
  /** Nothing forwarded: the sidecar's own answer (404 no route, 400 refused target), counted "unmatched". */
  refuse(req: InboundRequest, res: InboundResponse, err: SidecarError): void;
  refuseUpgrade(req: InboundRequest, socket: Duplex, err: SidecarError): void;
}

export function createPipeline(context: ProxyContext): Pipeline {
  // One nonce store for every entry: a nonce learnt through one path serves the others.
  const ctx: ProxyContext = { ...context, dpopNonces: context.dpopNonces ?? new NonceStore() };
  const pipeline: Pipeline = {
    ctx,
    // Every entry, the forward proxy's too (which reads its destination, not Host), refuses two Host lines.
    request(route, req, res) {
      if (hostLines(req.rawHeaders) > 1) return pipeline.refuse(req, res, duplicateHost());
      new ProxiedRequest(route, req, res, ctx).start();
    },
    upgrade(route, req, socket, head) {
      if (hostLines(req.rawHeaders) > 1) return pipeline.refuseUpgrade(req, socket, duplicateHost());
      new ProxiedUpgrade(route, req, socket, head, ctx).start();
    },
    refuse(req, res, err) {
      const started = performance.now();
      sendError(res, err, undefined);
      recordUnrouted(ctx, req, err, started);
    },
    refuseUpgrade(req, socket, err) {
      const started = performance.now();
      sendErrorOnSocket(socket, err, undefined);
      recordUnrouted(ctx, req, err, started);
    },
  };
  return pipeline;
}

const duplicateHost = () => new BadRequestError('the request has more than one Host field (RFC 9112 section 3.2)');

/** RFC 9112 3.2: a request with more than one Host field line is answered 400, never routed. */
function hostLines(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.length === 4 && rawHeaders[i]!.toLowerCase() === 'host') n++;
  return n;
}

/** Runs a resolver: its route, or the error a refused target or a miss is answered with. */
function resolveOrRefusal(resolve: RouteResolver, req: InboundRequest, miss: () => string): ProxyRoute | SidecarError {
  if (hostLines(req.rawHeaders) > 1) return duplicateHost();
  try {
    return resolve(req) ?? new RouteNotFoundError(miss());
  } catch (err) {
    if (err instanceof SidecarError) return err;
    throw err;
  }
}

/** An entry whose every request is routed or refused (a reverse-proxy listener). */
export function requestEntry(pipeline: Pipeline, resolve: RouteResolver, miss: (req: InboundRequest) => string): InboundListener {
  return (req, res) => {
    const route = resolveOrRefusal(resolve, req, () => miss(req));
    if (route instanceof SidecarError) pipeline.refuse(req, res, route);
    // resolveOrRefusal counted the Host lines already.
    else new ProxiedRequest(route, req, res, pipeline.ctx).start();
  };
}

/** The same for upgrades: there is no passthrough for an upgrade no route takes. */
export function upgradeEntry(pipeline: Pipeline, resolve: RouteResolver): UpgradeListener {
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const route = resolveOrRefusal(resolve, req, () => 'no route for this upgrade request');
    if (route instanceof SidecarError) pipeline.refuseUpgrade(req, socket, route);
    else pipeline.upgrade(route, req, socket, head);
  };
}

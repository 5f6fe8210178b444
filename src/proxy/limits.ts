/**
 * Bounds a peer can push against on every node:http server the sidecar runs (issue 10 items
 * 1-3): connections per listener, requests in flight per connection, header, request,
 * keep-alive and idle timeouts. Every closure the sidecar decides is counted by reason.
 */
import type { IncomingMessage, RequestListener, Server, ServerOptions, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { LimitsConfig } from '../config/schema.js';
import type { SidecarError } from '../errors.js';
import { sendError, sendErrorOnSocket } from './respond.js';

/** Bounded label values: which kind of listener, never its address. */
export type ListenerKind = 'proxy' | 'admin' | 'endpoints';

export type RejectReason = 'max_connections' | 'pipelining' | 'headers_timeout' | 'request_timeout' | 'idle_timeout' | 'forward_loop';

export interface ConnectionObserver {
  opened(kind: ListenerKind): void;
  closed(kind: ListenerKind): void;
  rejected(kind: ListenerKind, reason: RejectReason): void;
}

export const NO_CONNECTION_OBSERVER: ConnectionObserver = { opened() {}, closed() {}, rejected() {} };

export interface ListenerLimits {
  /** Connections open at once on one listener (not used by servers that never accept). */
  readonly maxConnections: number;
  readonly maxRequestsInFlight: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly idleTimeoutMs: number;
}

export function listenerLimits(config: LimitsConfig, kind: ListenerKind): ListenerLimits {
  return {
    maxConnections: config.maxConnections[kind],
    maxRequestsInFlight: config.maxRequestsInFlightPerConnection,
    headersTimeoutMs: config.headersTimeoutSeconds * 1000,
    requestTimeoutMs: config.requestTimeoutSeconds * 1000,
    keepAliveTimeoutMs: config.keepAliveTimeoutSeconds * 1000,
    idleTimeoutMs: config.idleTimeoutSeconds * 1000,
  };
}

/**
 * A request (or a connection) the sidecar refuses before any handler sees it: a loop back into
 * the sidecar (issue 10 item 10). Returns the error to answer with, or undefined to go on.
 */
export type Admission = (req: IncomingMessage) => SidecarError | undefined;

/**
 * node:http's own timeouts. Node 20 refuses headersTimeout > requestTimeout, so the smaller
 * wins. It only looks for expired requests every `connectionsCheckingInterval` (default 30 s,
 * which would double a 15 s headers timeout): check at a quarter of the shortest timeout,
 * at least every second, and never more often than every 25 ms.
 */
export function httpServerOptions(limits: ListenerLimits): ServerOptions {
  const requestTimeout = limits.requestTimeoutMs;
  const headersTimeout = Math.min(limits.headersTimeoutMs, requestTimeout);
  return {
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, Math.max(25, Math.floor(headersTimeout / 4))),
  };
}

export interface GuardedHandlers {
  readonly request: RequestListener;
  readonly connect?: ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
  readonly upgrade?: ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
  /** Checked for every request, CONNECT and upgrade before its handler. */
  readonly admit?: Admission | undefined;
}

/** The idle listener put on a detached (CONNECT, upgrade) socket. */
const kDetachedIdle = Symbol('detachedIdle');

interface ConnectionState {
  /** Requests in flight: their responses, not finished yet, in order. */
  readonly responses: Set<ServerResponse>;
  /** Paused by us at the in-flight limit (as opposed to node's own write backpressure). */
  paused: boolean;
}

/**
 * Installs the handlers on `server` behind the per-connection bounds. `server` must have been
 * created with httpServerOptions(limits) and without a request listener. The connection cap
 * itself is the listening server's `maxConnections` (see capConnections).
 */
export function guardServer(server: Server, kind: ListenerKind, limits: ListenerLimits, observer: ConnectionObserver, handlers: GuardedHandlers): void {
  // Idle: no bytes either way for this long while a request is in flight. Between requests
  // node applies keepAliveTimeout instead (it sets the socket's timeout itself).
  server.timeout = limits.idleTimeoutMs;
  const states = new WeakMap<Duplex, ConnectionState>();
  const stateOf = (socket: Duplex) => {
    let state = states.get(socket);
    if (!state) states.set(socket, (state = { responses: new Set(), paused: false }));
    return state;
  };
  const reject = (socket: Duplex, reason: RejectReason) => {
    observer.rejected(kind, reason);
    socket.destroy();
  };

  // One listener for every response of this server, not a closure per request (issue 15).
  function onResponseClose(this: ServerResponse): void {
    const socket = this.req.socket;
    const state = states.get(socket);
    if (!state) return;
    state.responses.delete(this);
    if (state.paused && state.responses.size < limits.maxRequestsInFlight) resumeReading(socket, state);
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const state = stateOf(socket);
    // Issue 10 item 1: node:http parses and dispatches every pipelined request of a chunk at
    // once. A connection that sends more while already at the limit is cut; none of the
    // excess reaches a handler (the rest of the chunk still parsed lands here too).
    if (socket.destroyed) return;
    if (state.responses.size >= limits.maxRequestsInFlight) return reject(socket, 'pipelining');
    const refusal = handlers.admit?.(req);
    if (refusal) {
      observer.rejected(kind, 'forward_loop');
      res.shouldKeepAlive = false;
      return sendError(res, refusal, undefined);
    }
    state.responses.add(res);
    if (state.responses.size === limits.maxRequestsInFlight) pauseReading(socket, state);
    res.on('close', onResponseClose);
    handlers.request(req, res);
  });

  const detached = (handler: GuardedHandlers['connect']) => (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (stateOf(socket).responses.size >= limits.maxRequestsInFlight) return reject(socket, 'pipelining');
    const refusal = handlers.admit?.(req);
    if (refusal) {
      observer.rejected(kind, 'forward_loop');
      socket.on('error', () => socket.destroy());
      return sendErrorOnSocket(socket, refusal, undefined);
    }
    // node:http forgets a socket once it is upgraded or CONNECTed, timers included:
    // a silent tunnel or WebSocket would otherwise stay open forever.
    const onIdle = () => reject(socket, 'idle_timeout');
    // Always a net.Socket here: node:http hands over the socket it accepted (or was given).
    (socket as Socket).setTimeout(limits.idleTimeoutMs);
    socket.once('timeout', onIdle);
    (socket as Duplex & { [kDetachedIdle]?: () => void })[kDetachedIdle] = onIdle;
    if (!handler) return void socket.destroy();
    handler(req, socket, head);
  };
  // A tunnel whose HTTP another guarded server parses (forward-proxy.ts) gets that server's
  // timeouts, keep-alive included: its expiry is not an idle tunnel.
  server.on('connection', (socket: Duplex & { [kDetachedIdle]?: () => void }) => {
    const onIdle = socket[kDetachedIdle];
    if (onIdle) socket.off('timeout', onIdle);
  });
  if (handlers.connect) server.on('connect', detached(handlers.connect));
  if (handlers.upgrade) server.on('upgrade', detached(handlers.upgrade));

  // Timeouts node detects (headers, request): count them, then answer as node would have
  // (a listener on 'clientError' replaces node's default answer).
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const state = states.get(socket);
    const responses = [...(state?.responses ?? [])];
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') observer.rejected(kind, responses.length > 0 ? 'request_timeout' : 'headers_timeout');
    // A response already under way cannot be followed by another status line; a reset peer reads nothing.
    if (socket.writable && err.code !== 'ECONNRESET' && !responses.some((r) => r.headersSent)) socket.write(clientErrorResponse(err.code));
    socket.destroy();
  });
  server.on('timeout', (socket: Duplex) => {
    // Fired for the idle timeout during a request and for node's keep-alive timeout between
    // requests; only the first is the sidecar giving up on a peer.
    if ((states.get(socket)?.responses.size ?? 0) > 0) observer.rejected(kind, 'idle_timeout');
    socket.destroy();
  });
}

/**
 * node:http starts checking header and request timeouts when a server starts listening
 * (lib/_http_server.js setupConnectionsTracking, on 'listening'). A server that only parses
 * sockets handed to it (the HTTP inside CONNECT tunnels) never listens, so nothing would ever
 * time out there: start the checks as listening would. server.close() stops them.
 */
export function startTimeoutChecks(server: Server): void {
  server.emit('listening');
}

/**
 * Issue 10 item 3: `maxConnections` on the listening server closes a connection past the cap
 * as it is accepted (node emits 'drop'), so one neighbour cannot take every descriptor. Open
 * connections are counted per listener kind; tunnels and upgrades stay counted until closed.
 */
export function capConnections(server: Server, kind: ListenerKind, limits: ListenerLimits, observer: ConnectionObserver): void {
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => observer.rejected(kind, 'max_connections'));
  server.on('connection', (socket: Socket) => {
    observer.opened(kind);
    socket.once('close', () => observer.closed(kind));
  });
}

/**
 * Stops reading from a connection at its in-flight limit. socket.pause() alone does not stop
 * node:http, whose parser reads the socket's handle directly; node pauses its parser after the
 * current chunk when `_paused` is set, the same switch it uses for its own write backpressure
 * (lib/_http_server.js parserOnIncoming / onParserExecuteCommon / socketOnDrain).
 */
function pauseReading(socket: Duplex, state: ConnectionState): void {
  state.paused = true;
  const internal = socket as Duplex & { _paused?: boolean };
  internal._paused = true;
  socket.pause();
}

function resumeReading(socket: Duplex, state: ConnectionState): void {
  state.paused = false;
  const internal = socket as Duplex & { _paused?: boolean; parser?: { resume(): void } | null };
  if (socket.destroyed) return;
  internal._paused = false;
  internal.parser?.resume();
  socket.resume();
}

/** node's own answers to a client error (lib/_http_server.js socketOnError). */
function clientErrorResponse(code: string | undefined): string {
  const status =
    code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? '408 Request Timeout'
      : code === 'HPE_HEADER_OVERFLOW'
        ? '431 Request Header Fields Too Large'
        : code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
          ? '413 Payload Too Large'
          : '400 Bad Request';
  return `HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`;
}

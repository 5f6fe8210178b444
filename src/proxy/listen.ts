/**
 * Listening and graceful shutdown for the sidecar's node:http servers. A proxy listener also
 * speaks cleartext HTTP/2 with prior knowledge on the same port (issue 12, RFC 9113 3.3): each
 * connection's first bytes decide (h2/preface.ts).
 */
import { createServer, type IncomingMessage, type Server, type RequestListener } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenAddress } from '../config/schema.js';
import {
  capConnections,
  guardServer,
  httpServerOptions,
  NO_CONNECTION_OBSERVER,
  type Admission,
  type ConnectionObserver,
  type ListenerKind,
  type ListenerLimits,
} from './limits.js';
import { createInboundH2, type InboundH2 } from './h2/server.js';
import { sniffProtocol } from './h2/preface.js';
import type { InboundListener, UpgradeListener } from './inbound.js';

export interface ListeningServer {
  readonly server: Server;
  /** Actual address (port resolved when 0 was configured). */
  readonly address: ListenAddress;
  readonly url: string;
  /** Stop accepting, let in-flight requests finish for up to `drainMs`, then cut what is left. */
  close(drainMs?: number): Promise<void>;
}

/** A CONNECT request (RFC 9110 9.3.6): the socket is the app's, handed over after the request head. */
export type ConnectListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface ListenOptions {
  /** Which bounds apply (issue 10 items 1-3) and the label its metrics carry. */
  readonly kind: ListenerKind;
  readonly limits: ListenerLimits;
  readonly observer?: ConnectionObserver;
  /** Refuses a request before its handler (a loop back into the sidecar, issue 10 item 10). */
  readonly admit?: Admission;
  /** Handles CONNECT; without it node answers CONNECT by closing the connection. */
  readonly onConnect?: ConnectListener;
  /** Serve cleartext HTTP/2 with prior knowledge too (default: on proxy listeners only; issue 12). */
  readonly h2?: boolean;
}

export async function listenHttp(
  address: ListenAddress,
  onRequest: RequestListener,
  onUpgrade: UpgradeListener | undefined,
  options: ListenOptions,
): Promise<ListeningServer> {
  const { kind, limits } = options;
  const observer = options.observer ?? NO_CONNECTION_OBSERVER;
  const server = createServer(httpServerOptions(limits));
  const h2 = (options.h2 ?? kind === 'proxy') ? sniffConnections(server, onRequest as InboundListener, options, observer) : undefined;
  guardServer(server, kind, limits, observer, { request: onRequest, upgrade: onUpgrade, connect: options.onConnect, admit: options.admit });
  capConnections(server, kind, limits, observer);
  // node:http forgets a socket once it is upgraded (or CONNECTed), so closeAllConnections()
  // would leave WebSocket and CONNECT tunnels open forever at shutdown: track every socket ourselves.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const info = server.address() as AddressInfo;
  const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
  return {
    server,
    address: { host: info.address, port: info.port },
    url: `http://${host}:${info.port}`,
    close: (drainMs = 0) => closeServer(server, sockets, drainMs, h2),
  };
}

/**
 * Puts a sniffer in front of node:http's own connection listener: a connection opening with
 * the HTTP/2 preface goes to an HTTP/2 session, any other to node:http as before. The other
 * 'connection' listeners (the cap's count, the socket set) still see every socket at once.
 */
function sniffConnections(server: Server, onRequest: InboundListener, options: ListenOptions, observer: ConnectionObserver): InboundH2 {
  const { kind, limits } = options;
  const h2 = createInboundH2(kind, limits, observer, { request: onRequest, admit: options.admit });
  const [nodeConnection] = server.rawListeners('connection') as Array<(socket: Socket) => void>;
  server.removeListener('connection', nodeConnection!);
  // Until the first bytes decide, the headers timeout applies (node:http's, answered as node does).
  const headersTimeoutMs = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  server.prependListener('connection', (socket: Socket) => {
    const onError = () => socket.destroy();
    socket.on('error', onError);
    sniffProtocol(socket, Buffer.alloc(0), headersTimeoutMs, (protocol) => {
      if (socket.destroyed) return;
      // From here node:http or node:http2 handles the socket's errors.
      if (protocol) socket.off('error', onError);
      if (protocol === 'h2') return void h2.serve(socket);
      if (protocol === 'h1') {
        nodeConnection!.call(server, socket);
        return void socket.resume();
      }
      observer.rejected(kind, 'headers_timeout');
      socket.end('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      socket.destroySoon();
    });
  });
  return h2;
}

function closeServer(server: Server, sockets: Set<Socket>, drainMs: number, h2: InboundH2 | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    const timer = setTimeout(() => {
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    }, drainMs);
    timer.unref();
    // Idle keep-alive sockets would otherwise hold close() open until they time out, and a
    // connection whose last request finishes during the drain only becomes idle then: look again.
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    idle.unref();
    server.close(() => {
      clearTimeout(timer);
      clearInterval(idle);
      resolve();
    });
    server.closeIdleConnections();
    // HTTP/2 sessions: GOAWAY, so streams in flight finish and idle sessions close now.
    h2?.closeSessions();
  });
}

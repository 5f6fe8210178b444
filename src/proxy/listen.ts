/**
 * Listening and graceful shutdown for the sidecar's node:http servers.
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
import type { UpgradeListener } from './inbound.js';

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
    close: (drainMs = 0) => closeServer(server, sockets, drainMs),
  };
}

function closeServer(server: Server, sockets: Set<Socket>, drainMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    const timer = setTimeout(() => {
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    }, drainMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    // Idle keep-alive sockets would otherwise hold close() open until they time out.
    server.closeIdleConnections();
  });
}

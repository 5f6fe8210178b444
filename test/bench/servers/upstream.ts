/**
 * Bench child: the upstream every case ends at. A plain node:http server (keep-alive)
 * answering a small fixed body; ECHO_AUTH_PATH echoes the Authorization header it got,
 * so the orchestrator can prove each proxy really injects the token.
 *
 * Optional `tls` (PEM key/cert, plus `ca` + `requestClientCert` for mTLS) makes it an
 * https server: the hook for a later "sidecar -> upstream over mTLS" row.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { ECHO_AUTH_PATH } from '../ipc.js';
import { serveChild } from './child.js';
import { closeServer, listenLoopback } from './listen.js';

export interface UpstreamOptions {
  /** Response body for every load request (default: 24 bytes of text). */
  readonly body?: string;
  readonly tls?: {
    readonly key: string;
    readonly cert: string;
    /** Trust anchors for client certificates; with requestClientCert, clients must present one. */
    readonly ca?: string;
    readonly requestClientCert?: boolean;
  };
}

serveChild<UpstreamOptions>(async (options) => {
  const body = Buffer.from(options.body ?? 'hello from the upstream\n');
  const headers = { 'content-type': 'text/plain', 'content-length': String(body.length) };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === ECHO_AUTH_PATH) {
      const socket = req.socket as Partial<TLSSocket>;
      const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
      const text = JSON.stringify({
        authorization: req.headers.authorization ?? null,
        host: req.headers.host ?? null,
        clientCertSubject: peer && peer.subject ? peer.subject.CN ?? null : null,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
      res.end(text);
      return;
    }
    res.writeHead(200, headers);
    res.end(body);
  };

  const tls = options.tls;
  const server: Server = tls
    ? createHttpsServer(
        { key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: tls.requestClientCert ?? false, rejectUnauthorized: tls.requestClientCert ?? false },
        handler,
      )
    : createHttpServer(handler);
  server.keepAliveTimeout = 60_000;
  const port = await listenLoopback(server);
  return {
    info: { url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, pid: process.pid },
    close: () => closeServer(server),
  };
});

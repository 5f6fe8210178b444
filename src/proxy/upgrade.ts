/**
 * Upgrade (WebSocket) pass-through. After the token is injected into the handshake the
 * connection is spliced byte-for-byte: whatever the upstream answers (101 or a refusal)
 * reaches the app unchanged.
 */
import type { IncomingMessage } from 'node:http';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { CachedToken } from '../cache/token-provider.js';
import { RouteNotFoundError, SidecarError, TokenUnavailableError } from '../errors.js';
import { forwardRequestHeaders } from './headers.js';
import { sendErrorOnSocket, upstreamError } from './respond.js';
import { credentialFor, warnThrottled, type ProxyContext, type ProxyRoute } from './reverse-proxy.js';

export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export function createUpgradeHandler(resolve: (req: IncomingMessage) => ProxyRoute | undefined, ctx: ProxyContext): UpgradeListener {
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const route = resolve(req);
    if (!route) {
      sendErrorOnSocket(socket, new RouteNotFoundError('no route for this upgrade request'), undefined);
      return;
    }
    ctx.tokens.getToken(route.name).then(
      (token) => splice(route, req, socket, head, token, ctx),
      (err: unknown) => {
        const e = err instanceof SidecarError ? err : new TokenUnavailableError(route.name, err);
        warnThrottled(ctx, route.name, e, 'upgrade refused');
        sendErrorOnSocket(socket, e, route.name);
      },
    );
  };
}

function splice(route: ProxyRoute, req: IncomingMessage, client: Duplex, head: Buffer, token: CachedToken, ctx: ProxyContext): void {
  if (client.destroyed) return;
  const credential = credentialFor(route, token);
  const { url } = route.upstream;
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  let upstream: Socket;
  const onConnected = () => {
    const headers = forwardRequestHeaders(req.rawHeaders, req.headers.connection, { tokenHeader: route.tokenHeader, dropTokenHeader: true });
    headers.push('host', route.preserveHost && req.headers.host ? req.headers.host : route.upstream.host);
    headers.push('connection', 'Upgrade', 'upgrade', req.headers.upgrade ?? 'websocket', route.tokenHeader, credential);
    let text = `${req.method ?? 'GET'} ${route.upstream.target(req.url ?? '/')} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    upstream.write(`${text}\r\n`);
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  };
  if (url.protocol === 'https:') {
    upstream = tlsConnect({
      host: hostname,
      port,
      ...(isIP(hostname) ? {} : { servername: hostname }),
      // The certificate the token is bound to (RFC 8705 3), like the pooled requests.
      ...route.upstream.connectOptions(token.identity),
      ALPNProtocols: ['http/1.1'],
    }, onConnected);
  } else {
    upstream = netConnect(port, hostname, onConnected);
  }
  let connected = false;
  upstream.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => (connected = true));
  upstream.on('error', (err) => {
    if (!connected) {
      const e = upstreamError(err, route.upstream.origin);
      warnThrottled(ctx, route.name, e, 'upgrade to upstream failed');
      sendErrorOnSocket(client, e, route.name);
    } else {
      client.destroy();
    }
  });
  // No half-open tunnels: WebSocket closes in-band, so when either side ends, both go.
  const teardown = () => {
    client.destroy();
    upstream.destroy();
  };
  client.once('end', teardown).once('close', teardown);
  upstream.once('end', teardown).once('close', teardown);
}

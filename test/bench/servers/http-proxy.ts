/**
 * Bench child: the baseline. A minimal http-proxy server doing the same job as the
 * sidecar with a token it already holds: inject `authorization: Bearer <token>` on
 * 'proxyReq', keep-alive http.Agent to the upstream.
 */
import { Agent, createServer, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import httpProxy from 'http-proxy';
import { serveChild } from './child.js';
import { closeServer, listenLoopback } from './listen.js';

export interface HttpProxyOptions {
  readonly upstreamUrl: string;
  readonly token: string;
}

serveChild<HttpProxyOptions>(async ({ upstreamUrl, token }) => {
  const agent = new Agent({ keepAlive: true, keepAliveMsecs: 30_000 });
  const proxy = httpProxy.createProxyServer({ target: upstreamUrl, agent });
  proxy.on('proxyReq', (proxyReq) => {
    proxyReq.setHeader('authorization', 'Bearer ' + token);
  });
  proxy.on('error', (err, _req, res) => {
    const r = res as ServerResponse | Socket;
    if ('writeHead' in r && !r.headersSent) {
      r.writeHead(502, { 'content-type': 'text/plain' });
      r.end(`bad gateway: ${err.message}\n`);
    } else {
      r.destroy();
    }
  });
  const server = createServer((req, res) => proxy.web(req, res));
  server.keepAliveTimeout = 60_000;
  const port = await listenLoopback(server);
  return {
    info: { url: `http://127.0.0.1:${port}`, pid: process.pid },
    close: async () => {
      await closeServer(server);
      agent.destroy();
      proxy.close();
    },
  };
});

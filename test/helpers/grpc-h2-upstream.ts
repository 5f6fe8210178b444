/**
 * A plain HTTP/2 upstream (node:http2, not gRPC): cleartext with prior knowledge (h2c,
 * RFC 9113 section 3.3) or TLS offering only `h2` through ALPN. Every request is answered
 * with JSON naming what arrived (`:authority`, path, authorization, the HTTP version the
 * server spoke) and recorded, so a test with curl `--http2-prior-knowledge` can check that
 * the sidecar spoke HTTP/2 upstream and injected the token.
 */
import { createSecureServer, createServer, type Http2SecureServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import type { Http2Session } from 'node:http2';

export interface H2Request {
  readonly method: string;
  readonly path: string;
  readonly authority: string | undefined;
  readonly authorization: string | undefined;
  /** '2.0' always (the server speaks nothing else); kept so a test can say so. */
  readonly httpVersion: string;
}

export interface TestH2Upstream {
  /** `http://127.0.0.1:PORT` (h2c) or `https://127.0.0.1:PORT` (TLS). */
  readonly url: string;
  readonly port: number;
  readonly requests: readonly H2Request[];
  close(): Promise<void>;
}

export async function startH2Upstream(options: { tls?: { cert: string; key: string } } = {}): Promise<TestH2Upstream> {
  const requests: H2Request[] = [];
  const sessions = new Set<Http2Session>();
  const handler = (req: Http2ServerRequest, res: Http2ServerResponse) => {
    const seen: H2Request = {
      method: req.method,
      path: req.url,
      authority: req.authority,
      authorization: req.headers.authorization,
      httpVersion: req.httpVersion,
    };
    requests.push(seen);
    req.resume();
    req.once('end', () => {
      const body = JSON.stringify(seen);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };
  // allowHTTP1 false: an HTTP/1.1 request to this server fails, so a pass proves HTTP/2 upstream.
  const server: Http2Server | Http2SecureServer = options.tls
    ? createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: false }, handler)
    : createServer(handler);
  server.on('session', (s: Http2Session) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port nothing listens on (bound, then closed): an upstream that is down. */
export async function closedPort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/**
 * The demo upstream: a resource server that accepts only tokens minted by the
 * reference STS for its audience (RFC 6750 bearer tokens, verified with jose).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, jwtVerify } from 'jose';

export interface DemoUpstreamOptions {
  readonly jwksUrl: string;
  readonly issuer: string;
  readonly audience: string;
  readonly host?: string;
  readonly port?: number;
}

export interface DemoUpstream {
  readonly url: string;
  close(): Promise<void>;
}

export async function startDemoUpstream(options: DemoUpstreamOptions): Promise<DemoUpstream> {
  const jwks = createRemoteJWKSet(new URL(options.jwksUrl));
  const server = createServer((req, res) => void handle(req, res));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer ([^\s]+)$/i.exec(header);
    if (!match) return refuse(res, 'invalid_request', 'a bearer token is required');
    try {
      const { payload } = await jwtVerify(match[1]!, jwks, { issuer: options.issuer, audience: options.audience });
      send(res, 200, {
        message: 'hello from the demo upstream: your token was accepted',
        path: req.url,
        token: { iss: payload.iss, sub: payload.sub, aud: payload.aud, scope: payload['scope'] ?? null, exp: payload.exp },
      });
    } catch (err) {
      refuse(res, 'invalid_token', (err as { code?: string }).code ?? 'token verification failed');
    }
  }

  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address}:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function refuse(res: ServerResponse, error: string, description: string): void {
  // RFC 6750 section 3: say why in WWW-Authenticate.
  res.setHeader('www-authenticate', `Bearer error="${error}", error_description="${description.replace(/"/g, "'")}"`);
  send(res, 401, { error, error_description: description });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The demo upstream: a resource server that accepts only tokens minted by the
 * reference STS for its audience (RFC 6750 bearer tokens, verified with jose). With
 * `tls` it speaks HTTPS, asks for a client certificate, and accepts a token only over
 * the certificate it is bound to (RFC 8705 section 3, through verifyBoundToken).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import { BoundTokenError } from '../errors.js';
import { sendJson } from '../http/reply.js';
import { verifyBoundToken, type BoundTokenKeys } from '../resource/verify-bound-token.js';

interface DemoUpstreamBase {
  readonly issuer: string;
  readonly audience: string;
  readonly host?: string;
  readonly port?: number;
  /** Serve HTTPS and require certificate-bound tokens. */
  readonly tls?: DemoUpstreamTls;
}

export type DemoUpstreamOptions =
  | (DemoUpstreamBase & { readonly jwksUrl: string; readonly jwks?: undefined })
  | (DemoUpstreamBase & { readonly jwks: BoundTokenKeys; readonly jwksUrl?: undefined });

export interface DemoUpstreamTls {
  /** PEM server certificate and key. */
  readonly cert: string;
  readonly key: string;
  /** PEM CA that client certificates must chain to. */
  readonly ca: string;
  /** Default true: refuse unbound tokens too. */
  readonly requireBinding?: boolean;
}

export interface DemoUpstream {
  readonly url: string;
  close(): Promise<void>;
}

export async function startDemoUpstream(options: DemoUpstreamOptions): Promise<DemoUpstream> {
  const jwks: BoundTokenKeys = options.jwks ?? new URL(options.jwksUrl);
  const tls = options.tls;
  const handler = (req: IncomingMessage, res: ServerResponse): void => void handle(req, res);
  const server = tls
    ? // Certificates are asked for but checked per request, so a client without one gets a 401 reason, not a TLS alert.
      createHttpsServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: false }, handler)
    : createServer(handler);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer ([^\s]+)$/i.exec(header);
    if (!match) return refuse(res, 'invalid_request', 'a bearer token is required');
    try {
      const payload = await verifyBoundToken(match[1]!, trustedPeerCertificate(req), {
        jwks,
        issuer: options.issuer,
        audience: options.audience,
        // Over plain HTTP there is no certificate to bind to: bearer tokens only (bound ones are still refused).
        requireBinding: tls ? (tls.requireBinding ?? true) : false,
      });
      sendJson(res, 200, {
        message: 'hello from the demo upstream: your token was accepted',
        path: req.url,
        token: {
          iss: payload.iss,
          sub: payload.sub,
          aud: payload.aud,
          scope: payload['scope'] ?? null,
          exp: payload.exp,
          ...(payload.cnf ? { cnf: payload.cnf } : {}),
        },
      });
    } catch (err) {
      if (!(err instanceof BoundTokenError)) return sendJson(res, 500, { error: 'server_error' });
      refuse(res, 'invalid_token', err.message, err.code);
    }
  }

  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `${tls ? 'https' : 'http'}://${address}:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The connection's client certificate when it verified against the CA; an untrusted one counts as none. */
function trustedPeerCertificate(req: IncomingMessage): X509Certificate | undefined {
  const socket = req.socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  return socket.getPeerX509Certificate();
}

function refuse(res: ServerResponse, error: string, description: string, code?: string): void {
  // RFC 6750 section 3: say why in WWW-Authenticate; RFC 8705 section 3: a binding mismatch is invalid_token.
  res.setHeader('www-authenticate', `Bearer error="${error}", error_description="${description.replace(/["\\]/g, "'")}"`);
  sendJson(res, 401, { error, error_description: description, ...(code ? { code } : {}) });
}


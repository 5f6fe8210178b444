/**
 * A tiny RFC 8693 token endpoint for the bench: any POST /token gets the same
 * ~800-character bearer token with a one-hour lifetime. It counts requests, so the run
 * can show that the sidecar exchanged once and served every proxied request from cache.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { closeServer, listenLoopback } from './servers/listen.js';

export interface StsStub {
  readonly tokenUrl: string;
  readonly token: string;
  /** POST /token requests answered with a token. */
  readonly tokenRequests: () => number;
  /** Every other request (should stay 0). */
  readonly otherRequests: () => number;
  close(): Promise<void>;
}

/** 800 characters of [A-Za-z0-9_-] with two dots: the size of a typical JWT access token. */
export function makeBenchToken(): string {
  const chars = randomBytes(600).toString('base64url'); // exactly 800 characters
  return `${chars.slice(0, 36)}.${chars.slice(37, 700)}.${chars.slice(701)}`;
}

export async function startStsStub(token = makeBenchToken()): Promise<StsStub> {
  let tokenRequests = 0;
  let otherRequests = 0;
  const reply = JSON.stringify({
    access_token: token,
    issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    token_type: 'Bearer',
    expires_in: 3600,
  });
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'POST' && (req.url ?? '').split('?', 1)[0] === '/token') {
        tokenRequests += 1;
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(reply) });
        res.end(reply);
      } else {
        otherRequests += 1;
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":"invalid_request"}');
      }
    });
  });
  const port = await listenLoopback(server);
  return {
    tokenUrl: `http://127.0.0.1:${port}/token`,
    token,
    tokenRequests: () => tokenRequests,
    otherRequests: () => otherRequests,
    close: () => closeServer(server),
  };
}

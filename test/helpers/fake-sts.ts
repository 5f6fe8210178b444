/**
 * A programmable RFC 8693 endpoint for tests that need to control the STS's timing and
 * failures (slow answers, outages, sequences of distinct tokens). Tests of the STS
 * protocol itself use the reference STS in src/devsts.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * up: a valid reply; down-503: HTTP 503 text; down-reset: connection reset;
 * not-json: 200 with HTML; no-access-token: 200 JSON without access_token;
 * huge: 200 with an 8 MiB JSON body; hang: accepts and never answers.
 */
export type FakeStsMode = 'up' | 'down-503' | 'down-reset' | 'not-json' | 'no-access-token' | 'huge' | 'hang';

export interface FakeSts {
  readonly tokenUrl: string;
  /** Exchanges answered with a token. */
  readonly issued: string[];
  /** Every request received, parsed form parameters. */
  readonly requests: URLSearchParams[];
  /** When each issued token expires (epoch ms), by token. */
  readonly expiry: Map<string, number>;
  mode: FakeStsMode;
  delayMs: number;
  lifetimeSeconds: number;
  /** Builds the n-th issued token (default: an opaque `issued-n-xxx` string). */
  makeToken: ((n: number) => string) | undefined;
  close(): Promise<void>;
}

export async function startFakeSts(options: { delayMs?: number; lifetimeSeconds?: number; prefix?: string } = {}): Promise<FakeSts> {
  const state = {
    mode: 'up' as FakeStsMode,
    delayMs: options.delayMs ?? 0,
    lifetimeSeconds: options.lifetimeSeconds ?? 3600,
    makeToken: undefined as ((n: number) => string) | undefined,
  };
  const issued: string[] = [];
  const requests: URLSearchParams[] = [];
  const expiry = new Map<string, number>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push(new URLSearchParams(Buffer.concat(chunks).toString()));
      if (state.mode === 'down-reset') return void req.socket.destroy();
      if (state.mode === 'hang') return;
      setTimeout(() => {
        if (state.mode === 'down-503') {
          res.writeHead(503, { 'content-type': 'text/plain' });
          return void res.end('unavailable');
        }
        if (state.mode === 'not-json') {
          res.writeHead(200, { 'content-type': 'text/html' });
          return void res.end('<html>login page</html>');
        }
        if (state.mode === 'no-access-token') {
          res.writeHead(200, { 'content-type': 'application/json' });
          return void res.end(JSON.stringify({ issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 60 }));
        }
        if (state.mode === 'huge') {
          res.writeHead(200, { 'content-type': 'application/json' });
          return void res.end(`{"access_token":"${'a'.repeat(8 * 1024 * 1024)}","issued_token_type":"x","token_type":"Bearer","expires_in":60}`);
        }
        const token = state.makeToken?.(issued.length + 1) ?? `${options.prefix ?? 'issued'}-${issued.length + 1}-${'x'.repeat(24)}`;
        issued.push(token);
        expiry.set(token, Date.now() + state.lifetimeSeconds * 1000);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            access_token: token,
            issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
            token_type: 'Bearer',
            expires_in: state.lifetimeSeconds,
          }),
        );
      }, state.delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    tokenUrl: `http://127.0.0.1:${port}/token`,
    issued,
    requests,
    expiry,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

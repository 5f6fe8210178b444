/**
 * Starting a real sidecar for a test: config through the real schema, every listener
 * on 127.0.0.1 port 0, logs captured in memory so tests can assert on them.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import { startSidecar, type Sidecar } from '../../src/main.js';

export interface SidecarHarness {
  readonly sidecar: Sidecar;
  /** Every log line written so far (JSON text). */
  readonly logs: string[];
  close(): Promise<void>;
}

export async function startHarness(config: Record<string, unknown>, options: { waitForTokens?: boolean } = {}): Promise<SidecarHarness> {
  const logs: string[] = [];
  const full = parseConfig({
    proxy: { listen: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'debug' },
    ...config,
  });
  const sidecar = await startSidecar(full, {
    logDestination: { write: (line: string) => void logs.push(line) },
    waitForTokens: options.waitForTokens ?? true,
  });
  return { sidecar, logs, close: () => sidecar.close(0) };
}

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly rawHeaders: string[];
  readonly body: Buffer;
}

export interface TestUpstream {
  readonly url: string;
  readonly requests: RecordedRequest[];
  readonly server: Server;
  close(): Promise<void>;
}

/**
 * An upstream that records each request (with its body) and answers through `respond`
 * (default: 200 with a JSON echo of method, url and whether a token arrived).
 */
export async function startUpstream(
  respond?: (req: RecordedRequest, res: ServerResponse) => void,
): Promise<TestUpstream> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks),
      };
      requests.push(recorded);
      if (respond) return respond(recorded, res);
      const body = JSON.stringify({ method: recorded.method, url: recorded.url, authorized: req.headers.authorization !== undefined });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    server,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const TOKEN_TYPE_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';

/** Kept for files not yet moved to ./eventually.js. */
export { sleep } from './eventually.js';

/** Parses the captured JSON log lines. */
export function parsedLogs(logs: readonly string[]): Array<Record<string, unknown>> {
  return logs.flatMap((l) => l.split('\n').filter(Boolean)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * Closes what a test started when the test ends, pass or fail:
 * `const own = closeAfter(t); const sts = own(await startFakeSts());`
 */
export function closeAfter(t: { after(fn: () => unknown): void }): <T extends { close(): unknown }>(resource: T) => T {
  return (resource) => {
    t.after(() => resource.close());
    return resource;
  };
}

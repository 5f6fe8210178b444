/**
 * Small helpers for integration tests against real loopback servers: an HTTP(S)
 * server on 127.0.0.1 port 0, request-body reading, a temp directory and a static
 * SecretSource. Generic on purpose: any test file may use them.
 */
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { SecretSource } from '../../src/credentials/secret-source.js';

export interface LoopbackServer {
  /** Origin without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Stops listening and destroys every open socket, so a hung response never keeps a test alive. */
  close(): Promise<void>;
}

export interface StartServerOptions {
  /** When given, the server speaks HTTPS with these options (key, cert, ...). */
  readonly tls?: HttpsServerOptions;
}

export async function startHttpServer(handler: RequestListener, options: StartServerOptions = {}): Promise<LoopbackServer> {
  const server: Server = options.tls ? createHttpsServer(options.tls, handler) : createHttpServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export interface TempDir {
  readonly path: string;
  cleanup(): Promise<void>;
}

export async function tempDir(prefix = 'sts-sidecar-test-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** A SecretSource that always returns `value` and never changes. */
export function secret(value: string, description = 'static test secret'): SecretSource {
  return { description, current: () => value, onChange: () => {}, close: () => {} };
}

/** A reply read whole: status, headers, the body as text and (when it is JSON) parsed. */
export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
  readonly text: string;
}

export async function send(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Non-JSON bodies are asserted through `text`.
  }
  return { status: res.status, headers: res.headers, body, text };
}

/** POSTs `params` as application/x-www-form-urlencoded (pairs keep repeated keys and their order). */
export function postForm(url: string, params: [string, string][] | Record<string, string>, headers: Record<string, string> = {}): Promise<Reply> {
  return send(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(params).toString() });
}

/**
 * Fixtures for the forward-proxy tests: real clients (curl, wget, python3) run as child
 * processes with a clean environment, and recording upstreams over http and https whose
 * certificates come from a CA made in the test.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createCertificateAuthority, type CertificateAuthority } from '../../src/pki/certificates.js';
import { echoAuthorization, startUpstream, type TestUpstream, type UpstreamAnswer } from './upstream.js';

const execFileAsync = promisify(execFile);

export interface ClientResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a client with only PATH and `env` in its environment (no proxy variable of the test
 * runner's own leaks in), and never throws on a non-zero exit: tests assert on `code`.
 */
export async function runClient(file: string, args: readonly string[], env: Record<string, string> = {}): Promise<ClientResult> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: '/nonexistent', ...env },
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

export type RecordingServer = TestUpstream;

/** An http or https upstream that records each request; the default answer echoes what arrived. */
export function startRecordingServer(options: { tls?: { cert: string; key: string }; respond?: UpstreamAnswer } = {}): Promise<RecordingServer> {
  return startUpstream({ respond: options.respond ?? echoAuthorization, ...(options.tls ? { tls: options.tls } : {}) });
}

export interface UpstreamPki {
  readonly ca: CertificateAuthority;
  /** The upstream CA's certificate, written to a file for clients and routes[].ca. */
  readonly caFile: string;
  /** A server certificate for 127.0.0.1 and localhost. */
  readonly server: { cert: string; key: string };
}

export async function makeUpstreamPki(dir: string): Promise<UpstreamPki> {
  const ca = createCertificateAuthority({ commonName: 'test upstream CA' });
  const leaf = ca.issue({ commonName: '127.0.0.1', subjectAltNames: ['127.0.0.1', 'localhost'], usage: 'server' });
  const caFile = join(dir, 'upstream-ca.pem');
  await writeFile(caFile, ca.certPem);
  return { ca, caFile, server: { cert: leaf.certPem, key: leaf.keyPem } };
}

/** The token as the upstream must see it. */
export const bearer = (token: string | undefined) => `Bearer ${token ?? '(none issued)'}`;

/** A raw TCP client for what real clients will not send (bad targets, HTTP/1.0 CONNECT by hand). */
export class RawClient {
  readonly #socket: Socket;
  #received = Buffer.alloc(0);
  #waiters: Array<() => void> = [];
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#received = Buffer.concat([this.#received, d]);
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
  }

  static async connect(port: number): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawClient(socket);
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  write(data: string | Buffer): void {
    this.#socket.write(data);
  }

  /** Waits until the bytes received since the last take() satisfy `done`, then returns and clears them. */
  async take(done: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.#received.toString('latin1'))) {
      if (this.#closed) break;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; received so far: ${JSON.stringify(this.#received.toString('latin1').slice(0, 300))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const text = this.#received.toString('latin1');
    this.#received = Buffer.alloc(0);
    return text;
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** True once `text` holds a whole HTTP response head and its Content-Length body. */
export function completeResponse(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
  return !length || text.length >= end + 4 + Number(length[1]);
}

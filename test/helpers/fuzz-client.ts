/**
 * The fuzz test's HTTP/1.1 client: raw bytes out (node:net, node:tls), responses read with
 * just enough of RFC 9112 to stay in step on a kept-alive connection: status line and
 * fields, interim 1xx skipped (section 4 of RFC 9110 15.2), no body for HEAD, 204 and 304,
 * chunked (RFC 9112 7.1) or Content-Length bodies, else until close. Never throws on what the
 * peer does: a closed or silent connection is a result, not an error.
 */
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Duplex } from 'node:stream';

export type ResponseResult =
  | { readonly kind: 'response'; readonly status: number; readonly close: boolean }
  | { readonly kind: 'closed' }
  | { readonly kind: 'timeout' };

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

export class RawConnection {
  readonly #stream: Duplex;
  #buffer: Buffer = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | undefined;
  readonly #onData = (chunk: Buffer) => {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    this.#wake?.();
  };
  readonly #onClose = () => {
    this.#closed = true;
    this.#wake?.();
  };

  constructor(stream: Duplex) {
    this.#stream = stream;
    stream.on('data', this.#onData);
    stream.on('close', this.#onClose);
    stream.on('end', this.#onClose);
    stream.on('error', this.#onClose);
  }

  get stream(): Duplex {
    return this.#stream;
  }

  write(bytes: Buffer): void {
    if (!this.#closed && !this.#stream.destroyed) this.#stream.write(bytes, () => undefined);
  }

  /** Stops reading (before TLS takes the stream over); returns what was read and not consumed. */
  detach(): Buffer {
    this.#stream.off('data', this.#onData);
    this.#stream.off('close', this.#onClose);
    this.#stream.off('end', this.#onClose);
    const left = this.#buffer;
    this.#buffer = Buffer.alloc(0);
    return left;
  }

  destroy(): void {
    this.#stream.destroy();
  }

  /** Waits for more bytes (or close); false when the deadline passed. */
  async #more(deadline: number): Promise<boolean> {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, left);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = undefined;
    return Date.now() < deadline;
  }

  async #take(length: number, deadline: number): Promise<Buffer | 'closed' | 'timeout'> {
    while (this.#buffer.length < length) {
      if (this.#closed) return 'closed';
      if (!(await this.#more(deadline)) && this.#buffer.length < length) return this.#closed ? 'closed' : 'timeout';
    }
    const out = this.#buffer.subarray(0, length);
    this.#buffer = this.#buffer.subarray(length);
    return out;
  }

  /** Bytes up to and including `delimiter`. */
  async #until(delimiter: Buffer, deadline: number): Promise<Buffer | 'closed' | 'timeout'> {
    for (;;) {
      const at = this.#buffer.indexOf(delimiter);
      if (at !== -1) return this.#take(at + delimiter.length, deadline);
      if (this.#closed) return 'closed';
      if (!(await this.#more(deadline)) && this.#buffer.indexOf(delimiter) === -1) return this.#closed ? 'closed' : 'timeout';
    }
  }

  /** Reads one response to a request with `method` (interim responses skipped). */
  async readResponse(method: string, timeoutMs: number): Promise<ResponseResult> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const head = await this.#until(HEAD_END, deadline);
      if (typeof head === 'string') return { kind: head };
      const text = head.toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? NaN);
      if (!Number.isInteger(status)) return { kind: 'closed' };
      if (status >= 100 && status < 200 && status !== 101) continue;
      const fields = parseFields(text);
      const close = status === 101 || /\bclose\b/i.test(fields.get('connection') ?? '') || text.startsWith('HTTP/1.0') && !/keep-alive/i.test(fields.get('connection') ?? '');
      if (status === 101) return { kind: 'response', status, close: true };
      const body = await this.#readBody(method, status, fields, deadline);
      if (body !== 'ok') return body === 'closed' && !fields.has('content-length') && !fields.has('transfer-encoding') ? { kind: 'response', status, close: true } : { kind: body };
      return { kind: 'response', status, close };
    }
  }

  async #readBody(method: string, status: number, fields: Map<string, string>, deadline: number): Promise<'ok' | 'closed' | 'timeout'> {
    // RFC 9110 9.3.6: a 2xx to CONNECT starts the tunnel, it has no body.
    if (method === 'HEAD' || status === 204 || status === 304 || (method === 'CONNECT' && status < 300)) return 'ok';
    if (/chunked/i.test(fields.get('transfer-encoding') ?? '')) {
      for (;;) {
        const line = await this.#until(CRLF, deadline);
        if (typeof line === 'string') return line;
        const size = parseInt(line.toString('latin1'), 16);
        if (!Number.isFinite(size)) return 'closed';
        if (size === 0) {
          // Trailer fields, then the empty line.
          for (;;) {
            const trailer = await this.#until(CRLF, deadline);
            if (typeof trailer === 'string') return trailer;
            if (trailer.length === 2) return 'ok';
          }
        }
        const data = await this.#take(size + 2, deadline);
        if (typeof data === 'string') return data;
      }
    }
    const length = fields.get('content-length');
    if (length !== undefined) {
      const data = await this.#take(Number(length), deadline);
      return typeof data === 'string' ? data : 'ok';
    }
    // No framing: the body runs to the end of the connection.
    while (!this.#closed) if (!(await this.#more(deadline))) return 'timeout';
    return 'closed';
  }
}

/** Lower-case field name -> value (repeated fields joined with ", "). */
function parseFields(head: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    fields.set(name, fields.has(name) ? `${fields.get(name)}, ${value}` : value);
  }
  return fields;
}

export function connectTcp(port: number): Promise<RawConnection | undefined> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1');
    socket.setNoDelay(true);
    socket.once('connect', () => resolve(new RawConnection(socket)));
    socket.once('error', () => resolve(undefined));
  });
}

export type TunnelResult = { readonly ok: true; readonly connection: RawConnection } | { readonly ok: false; readonly why: string };

/**
 * CONNECT through the proxy listener, then (with `tls`) a TLS handshake inside the tunnel
 * trusting only `tls.ca`, as an app whose trust store holds just the interception CA.
 */
export async function openTunnel(
  proxyPort: number,
  preamble: Buffer,
  timeoutMs: number,
  tls?: { readonly ca: string; readonly servername: string },
): Promise<TunnelResult> {
  const raw = await connectTcp(proxyPort);
  if (!raw) return { ok: false, why: 'connect to the proxy listener failed' };
  raw.write(preamble);
  const answer = await raw.readResponse('CONNECT', timeoutMs);
  if (answer.kind !== 'response' || answer.status !== 200) {
    raw.destroy();
    return { ok: false, why: answer.kind === 'response' ? `CONNECT answered ${answer.status}` : `CONNECT ${answer.kind}` };
  }
  if (!tls) return { ok: true, connection: raw };
  raw.detach();
  return new Promise((resolve) => {
    const secure = tlsConnect({ socket: raw.stream as import('node:net').Socket, servername: tls.servername, ca: tls.ca, ALPNProtocols: ['http/1.1'] });
    const timer = setTimeout(() => {
      secure.destroy();
      resolve({ ok: false, why: 'TLS handshake timed out' });
    }, timeoutMs);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      resolve({ ok: true, connection: new RawConnection(secure) });
    });
    secure.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      secure.destroy();
      resolve({ ok: false, why: `TLS handshake failed: ${err.code ?? err.message}` });
    });
  });
}

/**
 * The HTTP/2 sessions of one upstream origin for one workload-identity generation: one current
 * session that every request multiplexes its streams onto, replaced when it goes away.
 *
 * - GOAWAY (RFC 9113 6.8): the session takes no new streams; the next request opens a fresh
 *   one while streams in flight finish on the old one (node closes it when they are done).
 * - A session error or close: forgotten, the next request opens a fresh one.
 * - No stream for `idleMs`: closed, so an idle sidecar holds no upstream connections.
 * - Over TLS, ALPN (RFC 7301) offers `h2` and `http/1.1`; an upstream that picks anything but
 *   `h2` is reported as NotHttp2Error before a byte of any request was sent, and remembered:
 *   `learned` tells the auto transport (auto.ts) to use HTTP/1.1 for this identity from then on.
 */
import { connect as http2Connect, type ClientHttp2Session, type SecureClientSessionOptions } from 'node:http2';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';

/** The upstream chose another protocol than h2 through ALPN; nothing was sent. */
export class NotHttp2Error extends Error {
  readonly code = 'ERR_UPSTREAM_NOT_H2';
  constructor(readonly protocol: string | false | null) {
    super(`upstream chose ${protocol || 'no protocol'} through ALPN, not h2`);
  }
}

export interface SessionPoolOptions {
  readonly url: URL;
  /** TLS options (trust, SNI, the identity's certificate) for https; ignored for h2c. */
  readonly connect: ConnectionOptions;
  /** Time to establish the connection (TCP, TLS and the HTTP/2 preface). */
  readonly connectTimeoutMs: number;
  /** A session with no open stream for this long is closed. */
  readonly idleMs: number;
}

/**
 * Flow-control windows (RFC 9113 6.9.2) the sidecar grants an upstream: 1 MiB per stream, 4 MiB
 * per session. A paused stream stops being read, its window is not replenished, and the
 * upstream stops sending: what is buffered per session stays bounded by these numbers.
 */
const STREAM_WINDOW = 1 << 20;
const SESSION_WINDOW = 4 << 20;

/** A session and what the pool knows of it. */
export interface Live {
  readonly session: ClientHttp2Session;
  streams: number;
  idle: NodeJS.Timeout | undefined;
  /** GOAWAY, an error, or a refused stream: no new streams here. */
  draining: boolean;
}

export class SessionPool {
  readonly #options: SessionPoolOptions;
  #current: Promise<Live> | undefined;
  readonly #live = new Set<Live>();
  #closed = false;
  /** What the upstream chose through ALPN on the first connection ('h2' over h2c). */
  learned: 'h2' | 'http/1.1' | undefined;

  constructor(options: SessionPoolOptions) {
    this.#options = options;
    if (options.url.protocol !== 'https:') this.learned = 'h2';
  }

  /** A session that takes new streams: the current one, or a fresh one. */
  async acquire(): Promise<Live> {
    if (this.#closed) throw Object.assign(new Error('upstream transport is closed'), { code: 'ERR_UPSTREAM_CLOSED' });
    let current = this.#current;
    if (current) {
      const live = await current.catch(() => undefined);
      if (live && usable(live)) return live;
      if (this.#current === current) this.#current = undefined;
    }
    current = this.#current ??= this.#open();
    // A failed connect is not kept: the next request tries again.
    current.catch(() => {
      if (this.#current === current) this.#current = undefined;
    });
    return current;
  }

  /** Counts a stream on `live` (idle sessions close after idleMs). Returns the release. */
  track(live: Live): () => void {
    const { session } = live;
    live.streams += 1;
    if (live.idle) clearTimeout(live.idle);
    live.idle = undefined;
    session.ref();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      live.streams -= 1;
      if (live.streams === 0) this.#idle(live);
    };
  }

  /** No new streams on `live` (GOAWAY, an error, a refused stream): the next request opens another. */
  retire(live: Live): void {
    live.draining = true;
  }

  #idle(live: Live): void {
    // Unref'd: an idle session neither keeps the process alive nor outlives idleMs.
    live.session.unref();
    live.idle = setTimeout(() => live.session.close(), this.#options.idleMs);
    live.idle.unref();
  }

  async #open(): Promise<Live> {
    const { url, connectTimeoutMs } = this.#options;
    const socket = await this.#connectSocket();
    const secure = url.protocol === 'https:';
    if (secure) {
      const chosen = (socket as TLSSocket).alpnProtocol;
      if (chosen !== 'h2') {
        socket.destroy();
        this.learned = 'http/1.1';
        throw new NotHttp2Error(chosen);
      }
      this.learned = 'h2';
    }
    const options: SecureClientSessionOptions = {
      createConnection: () => socket,
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
    };
    const session = http2Connect(url.origin, options);
    const live: Live = { session, streams: 0, idle: undefined, draining: false };
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => session.destroy(Object.assign(new Error('HTTP/2 session setup timed out'), { code: 'ETIMEDOUT' })), connectTimeoutMs);
      session.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      session.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      session.once('close', () => {
        clearTimeout(timer);
        reject(Object.assign(new Error('upstream closed the HTTP/2 session during setup'), { code: 'ECONNRESET' }));
      });
    });
    session.setLocalWindowSize(SESSION_WINDOW);
    this.#live.add(live);
    const forget = () => this.retire(live);
    session.on('goaway', forget);
    // Errors reach the streams too; here the session is only forgotten.
    session.on('error', forget);
    session.once('close', () => {
      forget();
      if (live.idle) clearTimeout(live.idle);
      this.#live.delete(live);
    });
    if (this.#closed) session.close();
    else this.#idle(live);
    return live;
  }

  #connectSocket(): Promise<Socket> {
    const { url, connect, connectTimeoutMs } = this.#options;
    const secure = url.protocol === 'https:';
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port) || (secure ? 443 : 80);
    const socket: Socket = secure
      ? tlsConnect({
          host,
          port,
          // SNI carries a name, never an address (RFC 6066 3).
          ...(isIP(host) === 0 ? { servername: host } : {}),
          ...connect,
          ALPNProtocols: ['h2', 'http/1.1'],
        })
      : netConnect({ host, port });
    socket.setNoDelay(true);
    return new Promise((resolve, reject) => {
      const ready = secure ? 'secureConnect' : 'connect';
      socket.setTimeout(connectTimeoutMs, () => socket.destroy(Object.assign(new Error(`connecting to ${url.origin} timed out`), { code: 'UND_ERR_CONNECT_TIMEOUT' })));
      socket.once(ready, () => {
        socket.setTimeout(0);
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  }

  /** Graceful: streams in flight finish, no new ones start. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#current?.catch(() => undefined);
    await Promise.all(
      [...this.#live].map(
        (live) =>
          new Promise<void>((resolve) => {
            if (live.idle) clearTimeout(live.idle);
            if (live.session.closed || live.session.destroyed) return resolve();
            live.session.ref();
            live.session.close(() => resolve());
          }),
      ),
    );
  }
}

function usable(live: Live): boolean {
  return !live.draining && !live.session.closed && !live.session.destroyed;
}

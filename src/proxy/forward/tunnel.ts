/**
 * Byte-for-byte CONNECT tunnels (RFC 9110 9.3.6), and the replay stream that lets a tunnel
 * be inspected before deciding what to do with it.
 */
import { connect } from 'node:net';
import { Duplex } from 'node:stream';
import type { Destination } from './destination.js';
import { dialName } from './destination.js';
import type { DialPolicy } from './dial-policy.js';

/** RFC 9110 9.3.6: any 2xx answer to CONNECT switches the connection to tunnel mode. */
export const CONNECT_ESTABLISHED = 'HTTP/1.1 200 Connection established\r\n\r\n';

export interface SpliceOptions {
  /** Bytes the app already sent past the CONNECT head (or that were read to sniff the tunnel). */
  readonly head: Buffer;
  /** Write the 200 once the destination accepted the connection (false: already written). */
  readonly announce: boolean;
  /** The destination could not be reached, or may not be (a SidecarError); the app socket is still open, and the callback's to answer or close. */
  readonly onConnectError: (err: Error) => void;
  /** Where the tunnel may go (issue 10 items 10, 11). */
  readonly policy: DialPolicy;
  /** A tunnel with no bytes either way for this long is closed (limits.idleTimeoutSeconds). */
  readonly idleTimeoutMs: number;
  /**
   * Called once the destination accepted the connection (after the 200 when `announce`).
   * Without it the tunnel is joined at once with `head`. With it the caller decides: join
   * once it has seen the app's first bytes, or release the destination and keep the app's
   * socket (a tunnel dialled before the 200 that turned out to carry plain HTTP, issue 10 item 21).
   */
  readonly onOpen?: (tunnel: OpenTunnel) => void;
}

export interface OpenTunnel {
  /** Splices both directions, `head` (bytes already read from the app) sent first. */
  join(head: Buffer): void;
  /** Closes the destination's side only; the app's socket stays open for the caller. */
  release(): void;
}

/**
 * Connects to the destination and splices both directions. Half-closes pass through (the
 * app's socket allows them), so protocols that end their request with FIN still work.
 */
export function splice(client: Duplex, destination: Destination, options: SpliceOptions): void {
  const host = dialName(destination);
  const { port } = destination;
  const refused = options.policy.literalRefusal(host, port);
  if (refused) return void process.nextTick(() => options.onConnectError(refused));
  const upstream = connect({ host, port, lookup: options.policy.lookup(port) });
  let connected = false;
  let released = false;
  const tunnel: OpenTunnel = {
    join(head) {
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
      client.resume();
    },
    release() {
      released = true;
      client.off('error', closeUpstream);
      client.off('close', closeUpstream);
      upstream.destroy();
    },
  };
  upstream.once('connect', () => {
    connected = true;
    if (client.destroyed) return void upstream.destroy();
    options.policy.trackRelay(upstream);
    // Either side's activity counts: bytes from the destination are written to the app's socket.
    // The app's side has the same idle limit (listener guard), counted as idle_timeout; this one
    // is the backstop, a second later, so the two do not race to close the same silent tunnel.
    upstream.setTimeout(options.idleTimeoutMs + 1000, () => upstream.destroy());
    if (options.announce) client.write(CONNECT_ESTABLISHED);
    if (options.onOpen) options.onOpen(tunnel);
    else tunnel.join(options.head);
  });
  upstream.on('error', (err) => {
    if (!connected) options.onConnectError(err);
    else if (!released) client.destroy();
  });
  const closeUpstream = () => upstream.destroy();
  client.on('error', closeUpstream);
  client.once('close', closeUpstream);
  // Before the destination accepted, onConnectError owns the app's socket (it may still answer on it).
  upstream.once('close', () => {
    if (connected && !released) client.destroy();
  });
}

/**
 * `socket` with `first` (already read from it) put back in front. TLSSocket reads straight
 * from a net.Socket's native handle and would never see bytes returned with unshift(), so
 * interception wraps the socket in this JavaScript stream instead.
 */
export class ReplayedSocket extends Duplex {
  readonly #socket: Duplex;

  constructor(socket: Duplex, first: Buffer) {
    super({ allowHalfOpen: false });
    this.#socket = socket;
    this.push(first);
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.once('end', () => this.push(null));
    socket.once('error', (err) => this.destroy(err));
    socket.once('close', () => this.destroy());
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#socket.write(chunk, encoding, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#socket.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#socket.destroy(err ?? undefined);
    callback(err);
  }
}

/** How long an answered CONNECT may stay silent before the sidecar gives up on it. */
export const FIRST_BYTES_TIMEOUT_MS = 30_000;

/**
 * The first bytes the app sends into a tunnel: `head` when the CONNECT already carried
 * some, else the next chunk. Undefined when the app closed without sending anything, or
 * sent nothing for `timeoutMs` (once detached from node:http, no server timeout covers
 * the socket, and a silent tunnel would otherwise be held forever).
 */
export function firstBytes(
  socket: Duplex,
  head: Buffer,
  onFirst: (chunk: Buffer | undefined) => void,
  timeoutMs = FIRST_BYTES_TIMEOUT_MS,
): void {
  if (head.length) return onFirst(head);
  const timer = setTimeout(() => {
    cleanup();
    onFirst(undefined);
  }, timeoutMs);
  timer.unref();
  const onData = (chunk: Buffer) => {
    cleanup();
    socket.pause();
    onFirst(chunk);
  };
  const onGone = () => {
    cleanup();
    onFirst(undefined);
  };
  const cleanup = () => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onGone);
    socket.off('close', onGone);
  };
  socket.on('data', onData);
  socket.once('end', onGone);
  socket.once('close', onGone);
  socket.resume();
}

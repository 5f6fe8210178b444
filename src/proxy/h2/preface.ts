/**
 * Telling HTTP/2 with prior knowledge from HTTP/1.1 on one port (RFC 9113 3.3): an HTTP/2
 * client's first bytes are the connection preface, which no HTTP/1.1 request line can start
 * with ("PRI" is no method a client sends, and "HTTP/2.0" no HTTP/1.x version). So a port can
 * serve both, decided on the first bytes, without ALPN or an Upgrade (RFC 9113 removed h2c
 * upgrades, 3.1).
 */
import type { Duplex } from 'node:stream';

/** RFC 9113 3.4: the client connection preface, before its SETTINGS frame. */
export const CONNECTION_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type SniffedProtocol = 'h1' | 'h2';

/**
 * What `bytes` (the first a client sent) say: `h2` once they hold the whole preface, `h1` once
 * they cannot be its start, undefined while they are a proper prefix of it (wait for more).
 */
export function protocolOf(bytes: Buffer): SniffedProtocol | undefined {
  const n = Math.min(bytes.length, CONNECTION_PREFACE.length);
  if (bytes.compare(CONNECTION_PREFACE, 0, n, 0, n) !== 0) return 'h1';
  return n === CONNECTION_PREFACE.length ? 'h2' : undefined;
}

/**
 * Reads the first bytes of `socket` until they name a protocol, then puts them back
 * (unshift, the socket left paused) and calls `onDecided`. Nothing is lost: node:http2
 * reads what is buffered on a socket handed to it (lib/internal/http2/core.js, the
 * readableLength check, nodejs/node#35475), and node:http parses it once the socket is
 * resumed. `onDecided(undefined)` when the peer sent nothing decisive within `timeoutMs` or
 * went away; the socket is still the caller's to answer or close.
 */
export function sniffProtocol(socket: Duplex, head: Buffer, timeoutMs: number, onDecided: (protocol: SniffedProtocol | undefined) => void): void {
  let seen = head;
  const decided = protocolOf(seen);
  if (decided) {
    if (seen.length) socket.unshift(seen);
    return onDecided(decided);
  }
  const timer = setTimeout(() => finish(undefined), timeoutMs);
  timer.unref();
  const onData = (chunk: Buffer) => {
    seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
    const protocol = protocolOf(seen);
    if (protocol) finish(protocol);
  };
  const onGone = () => finish(undefined);
  function finish(protocol: SniffedProtocol | undefined): void {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onGone);
    socket.off('close', onGone);
    socket.pause();
    if (protocol && seen.length) socket.unshift(seen);
    onDecided(protocol);
  }
  socket.on('data', onData);
  socket.once('end', onGone);
  socket.once('close', onGone);
  socket.resume();
}

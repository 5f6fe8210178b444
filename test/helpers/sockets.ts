/**
 * Raw TCP peers for the hardening tests: connections that stay silent, send half a request,
 * pipeline thousands of requests without reading, and the checks on what the sidecar did
 * with them (closed or not, by when), plus metric samples and open descriptors.
 */
import { readdirSync } from 'node:fs';
import { get } from 'node:http';
import { connect, type Socket } from 'node:net';

export interface Peer {
  readonly socket: Socket;
  /** Everything received so far (latin1). */
  received(): string;
  readonly closed: Promise<void>;
  isClosed(): boolean;
}

/** A connected socket to 127.0.0.1:port that records what it receives and when it closes. */
export async function openPeer(port: number, options: { read?: boolean } = {}): Promise<Peer> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let text = '';
  let closed = false;
  const closedPromise = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  if (options.read === false) socket.pause();
  else socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  return { socket, received: () => text, closed: closedPromise, isClosed: () => closed };
}

/** Resolves true once `peer` was closed, false if it is still open after `ms`. */
export async function closedWithin(peer: Peer, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const result = await Promise.race([peer.closed.then(() => true), timeout]);
  clearTimeout(timer);
  return result;
}

/** The port of a listener's URL. */
export const portOf = (url: string): number => Number(new URL(url).port);

/** The value of one sample in Prometheus text (0 when absent). */
export function sample(text: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(',');
    if (wanted.every((w) => have.includes(w))) return Number(m[3]);
  }
  return 0;
}

/** Descriptors this process holds open now (Linux). */
export function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

/** `count` copies of an HTTP/1.1 request head, for one pipelined write. */
export function pipelined(count: number, head: (i: number) => string): string {
  let out = '';
  for (let i = 0; i < count; i++) out += head(i);
  return out;
}

/**
 * GET on a connection of its own, closed after the answer: for listeners whose connection
 * count a test asserts on (fetch would keep its connection open in a shared pool).
 */
export function getOnce(url: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    }).on('error', reject);
  });
}

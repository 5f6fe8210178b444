/**
 * A minimal DER writer (ITU-T X.690), just enough to build the X.509 certificates the
 * sidecar issues itself: the interception CA's leaves, the demo's workload identities
 * and test fixtures. Reading is left to node:crypto's X509Certificate except for the few
 * fields it does not expose (a CA's subject Name bytes and its Subject Key Identifier),
 * which the reader at the end walks to.
 */

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n >>>= 8) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Tag-length-value with a raw tag byte. */
export function tlv(tag: number, ...contents: readonly Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export const sequence = (...items: readonly Buffer[]): Buffer => tlv(0x30, ...items);
export const set = (...items: readonly Buffer[]): Buffer => tlv(0x31, ...items);
export const octetString = (bytes: Buffer): Buffer => tlv(0x04, bytes);
export const utf8String = (text: string): Buffer => tlv(0x0c, Buffer.from(text, 'utf8'));
export const boolean = (value: boolean): Buffer => tlv(0x01, Buffer.from([value ? 0xff : 0x00]));
export const nullValue = (): Buffer => Buffer.from([0x05, 0x00]);

/** [n] EXPLICIT: constructed context-specific tag around an encoded value. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
/** [n] IMPLICIT primitive: context-specific tag replacing the value's own. */
export const implicitPrimitive = (n: number, bytes: Buffer): Buffer => tlv(0x80 | n, bytes);

/** A non-negative INTEGER from big-endian bytes (leading zeros stripped, sign byte added). */
export function unsignedInteger(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  let body = bytes.subarray(start);
  if (body.length === 0) body = Buffer.from([0]);
  if (body[0]! & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return tlv(0x02, body);
}

export const smallInteger = (n: number): Buffer => unsignedInteger(Buffer.from([n]));

export function objectIdentifier(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const base128: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) base128.unshift((n & 0x7f) | 0x80);
    out.push(...base128);
  }
  return tlv(0x06, Buffer.from(out));
}

/** BIT STRING of whole bytes (e.g. a signature). */
export const bitString = (bytes: Buffer): Buffer => tlv(0x03, Buffer.from([0]), bytes);

/**
 * BIT STRING holding named bits (bit 0 = most significant bit of the first byte), with
 * trailing zero bits removed as X.690 11.2.2 requires for DER.
 */
export function namedBitString(bits: readonly number[]): Buffer {
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  const unused = 7 - (highest & 7);
  return tlv(0x03, Buffer.from([unused]), bytes);
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
export function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '') + 'Z'; // YYYYMMDDHHMMSSZ
  const year = date.getUTCFullYear();
  if (year >= 1950 && year < 2050) return tlv(0x17, Buffer.from(digits.slice(2), 'ascii'));
  return tlv(0x18, Buffer.from(digits, 'ascii'));
}

// --- reading ---------------------------------------------------------------------------

/** One DER element inside a buffer: its tag byte, and where its contents start and end. */
interface Element {
  readonly tag: number;
  readonly start: number;
  readonly contentsStart: number;
  readonly end: number;
}

function readElement(buf: Buffer, offset: number): Element {
  if (offset + 2 > buf.length) throw new RangeError('truncated DER element');
  const tag = buf[offset]!;
  const first = buf[offset + 1]!;
  let length = first;
  let headerLength = 2;
  if (first >= 0x80) {
    const count = first & 0x7f;
    if (count === 0 || count > 4) throw new RangeError('unsupported DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[offset + 2 + i]!;
    headerLength += count;
  }
  const end = offset + headerLength + length;
  if (end > buf.length) throw new RangeError('truncated DER element');
  return { tag, start: offset, contentsStart: offset + headerLength, end };
}

/** The tag byte of an encoded element. */
export const tagOf = (element: Buffer): number => element[0]!;

/** The contents octets of an encoded element (no tag, no length). */
export function contentsOf(element: Buffer): Buffer {
  const e = readElement(element, 0);
  return element.subarray(e.contentsStart, e.end);
}

/** The encoded child elements of a constructed element (a SEQUENCE, SET or [n] EXPLICIT). */
export function childrenOf(element: Buffer): Buffer[] {
  const outer = readElement(element, 0);
  const out: Buffer[] = [];
  for (let offset = outer.contentsStart; offset < outer.end; ) {
    const child = readElement(element, offset);
    out.push(element.subarray(child.start, child.end));
    offset = child.end;
  }
  return out;
}

/**
 * The request generator of the HTTP-front fuzz test (issue 10, "What must show"): sessions of
 * requests, each session one connection in one of the ways a request enters the sidecar, each
 * request drawn from its own PRNG seeded by (seed, session, index) so that any one of them can
 * be regenerated and replayed alone, whatever the concurrency of the run that found it.
 *
 * The vocabulary is chosen to hit the trust boundary: dot-segments raw and percent-encoded
 * (RFC 3986 section 5.2.4; WHATWG URL treats %2e as a dot), encoded and back slashes, double
 * encoding, queries and fragments, absolute URIs and `*`, Host values that differ by case, port,
 * trailing dot or name, duplicate or missing Host lines, and the header shapes request smuggling
 * and hop-by-hop tricks use (RFC 9112 section 6, RFC 9110 section 7.6.1).
 */

/** A small, fast, seedable PRNG (mulberry32): reproducible across runs and Node versions. */
export class Prng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** Picks by weight: `[[weight, value], ...]`. */
  weighted<T>(items: ReadonlyArray<readonly [number, T]>): T {
    const total = items.reduce((sum, [w]) => sum + w, 0);
    let r = this.next() * total;
    for (const [w, v] of items) {
      r -= w;
      if (r < 0) return v;
    }
    return items[items.length - 1]![1];
  }
}

/** FNV-1a over the text: a 32-bit seed for one session or one request. */
export function seedFor(...parts: Array<string | number>): number {
  let h = 0x811c9dc5;
  for (const ch of parts.join(':')) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A route of the fuzz topology, as the generator and the checker see it. */
export interface FuzzRouteSpec {
  readonly name: string;
  readonly host: string;
  readonly pathPrefix: string;
  /** The upstream URL's base path ('' for none). */
  readonly base: string;
  readonly listen: boolean;
  readonly preserveHost: boolean;
  readonly intercept: boolean;
}

/**
 * Five routes cover the four ways in: two share a Host on the shared listener, one has a
 * dedicated listener and an upstream base path, one has a dedicated listener and preserveHost
 * (behind a Host-routing gateway), one is intercepted.
 */
export const FUZZ_ROUTES: readonly FuzzRouteSpec[] = [
  { name: 'orders', host: 'orders.internal', pathPrefix: '/api', base: '', listen: false, preserveHost: false, intercept: false },
  { name: 'reports', host: 'orders.internal', pathPrefix: '/reports', base: '', listen: false, preserveHost: false, intercept: false },
  { name: 'payments', host: 'payments.internal', pathPrefix: '/v1', base: '/payments-api', listen: true, preserveHost: false, intercept: false },
  { name: 'gateway', host: 'gw.internal', pathPrefix: '/', base: '', listen: true, preserveHost: true, intercept: false },
  { name: 'secure', host: 'secure.internal', pathPrefix: '/data', base: '', listen: false, preserveHost: false, intercept: true },
];

/** How a session's connection reaches the sidecar. */
export type FuzzMode = 'reverse' | 'dedicated' | 'absolute' | 'connect' | 'intercept';

export const FUZZ_MODES: readonly FuzzMode[] = ['reverse', 'dedicated', 'absolute', 'connect', 'intercept'];

/** Ports the generator needs to name (listeners and the decoy). */
export interface FuzzPorts {
  readonly proxy: number;
  /** An upstream no route names: where unmatched forward requests may go. */
  readonly decoy: number;
}

export interface FuzzSession {
  readonly index: number;
  readonly mode: FuzzMode;
  /** 'shared' for the proxy listener, else the route whose dedicated listener is used. */
  readonly listener: 'shared' | 'payments' | 'gateway';
  /** CONNECT authority for the tunnel modes. */
  readonly connectTo?: string;
  /** TLS server name (intercept mode). */
  readonly sni?: string;
  readonly requests: number;
}

export interface FuzzRequest {
  /** `<session>.<index>`: the X-Fuzz-Id header value, and how to replay it. */
  readonly id: string;
  readonly session: FuzzSession;
  readonly method: string;
  readonly target: string;
  /** Every Host line, in order (empty: none). */
  readonly hosts: readonly string[];
  /** HEAD: the response carries no body. */
  readonly bytes: Buffer;
  /** Sent in the same write as the request after it (pipelining). */
  readonly pipelineNext: boolean;
  /**
   * The app hangs up mid-body: only this many bytes are sent, then the connection is closed
   * (what a cancelled upload does; the sidecar must let go of the upstream request too).
   */
  readonly hangUpAfter?: number;
  /** How long the app waits after those bytes before it closes (0-30 ms: before or after the sidecar forwarded). */
  readonly hangUpDelayMs?: number;
}

const ROUTE_HOSTS = ['orders.internal', 'payments.internal', 'gw.internal', 'secure.internal'];
const OTHER_HOSTS = [
  'evil.internal',
  'orders.internal.evil',
  'orders-internal',
  'localhost',
  '127.0.0.1',
  'payments.internal@evil.internal',
  'evil.internal:orders.internal',
  'gw.internal.evil.internal',
  '[::1]',
  'xn--rders-internal',
];
const PREFIXES = ['/api', '/reports', '/v1', '/data', '/', '/api/', '/v1/'];
const OTHER_STARTS = ['/admin', '/', '/internal', '/payments-api', '/API', '/api2', '/apix', '/v1x', '/Data', '//api', '/reports.json'];
const DOTS = ['..', '.', '%2e%2e', '%2E%2E', '%2e.', '.%2E', '%2e', '%2E', '%252e%252e', '..;', '%c0%ae%c0%ae', '...', '..%00', '.%2e'];
const WORDS = ['admin', 'refund', 'x', 'payments-api', 'api', 'v1', 'data', 'reports', 'secret', '', 'a%2Fb', '%41dmin', 'admin%00', 'ünï', '~root', 'a b'];
const SEPARATORS = ['%2f', '%2F', '%5c', '%5C', '\\', '//', '/./', '%252f'];
const QUERIES = ['?a=1', '?', '?x=/../admin', '?%2e%2e/admin', '?next=http://evil.internal/', '?a=1&a=2', '?/../../admin'];
const FRAGMENTS = ['#f', '#/../admin', '#', '#%2e%2e'];
const ODD_TARGETS = ['*', 'api/x', '?x', '//evil.internal/api', 'http://orders.internal/api/x', 'https://secure.internal/data', '/%', '/%zz', ''];

const COMMON_METHODS: ReadonlyArray<readonly [number, string]> = [
  [40, 'GET'],
  [10, 'POST'],
  [8, 'HEAD'],
  [5, 'PUT'],
  [5, 'DELETE'],
  [5, 'OPTIONS'],
  [4, 'PATCH'],
  [6, 'TRACE'],
  // Tokens llhttp knows but few apps send (WebDAV, cache purges, SSDP, the QUERY draft).
  [6, 'RARE'],
  // Not methods node accepts, or not tokens at all: answered 400 by the parser.
  [2, 'BAD'],
];
const RARE_METHODS = ['PROPFIND', 'MKCOL', 'PURGE', 'SEARCH', 'REPORT', 'LINK', 'UNLINK', 'M-SEARCH', 'SOURCE', 'ACL', 'LOCK', 'COPY', 'MOVE', 'QUERY'];
const BAD_METHODS = ['FOO', 'get', 'G\tET', 'GET /', 'BREW', 'PRI'];

/** Upper-cases a random subset of letters. */
function mixCase(rng: Prng, text: string): string {
  let out = '';
  for (const ch of text) out += rng.chance(0.4) ? ch.toUpperCase() : ch;
  return out;
}

/** A session: which way in, where (listener or CONNECT authority), how many requests. */
export function generateSession(seed: number, index: number, ports: FuzzPorts): FuzzSession {
  const rng = new Prng(seedFor(seed, 'session', index));
  const mode = rng.weighted<FuzzMode>([
    [30, 'reverse'],
    [20, 'dedicated'],
    [20, 'absolute'],
    [15, 'connect'],
    [15, 'intercept'],
  ]);
  const requests = rng.chance(0.1) ? 1 : rng.int(2, 40);
  switch (mode) {
    case 'dedicated':
      return { index, mode, listener: rng.pick(['payments', 'gateway'] as const), requests };
    case 'connect': {
      const name = rng.weighted<string>([
        [80, rng.pick(ROUTE_HOSTS)],
        [12, `127.0.0.1:${ports.decoy}`],
        [4, 'evil.internal:80'],
        [4, `localhost:${ports.decoy}`],
      ]);
      const authority = name.includes(':') ? name : `${hostVariant(rng, name, false)}:80`;
      return { index, mode, listener: 'shared', connectTo: authority, requests };
    }
    case 'intercept': {
      const name = rng.weighted<string>([
        [85, 'secure.internal'],
        [10, 'SECURE.Internal'],
        [5, 'secure.internal.'],
      ]);
      return { index, mode, listener: 'shared', connectTo: `${name}:443`, sni: 'secure.internal', requests };
    }
    default:
      return { index, mode, listener: 'shared', requests };
  }
}

/** A Host-like name: case, trailing dot, port and padding mutations of `name`. */
function hostVariant(rng: Prng, name: string, withPort: boolean): string {
  let v = name;
  if (rng.chance(0.2)) v = mixCase(rng, v);
  if (rng.chance(0.1)) v += '.';
  if (withPort && rng.chance(0.25)) v += rng.pick([':80', ':443', ':8080', ':1', ':65535', ':99999', ':', ':080', ':0']);
  return v;
}

function hostValue(rng: Prng, ports: FuzzPorts): string {
  const base = rng.chance(0.8) ? rng.pick(ROUTE_HOSTS) : rng.pick([...OTHER_HOSTS, `127.0.0.1:${ports.proxy}`, '']);
  let v = hostVariant(rng, base, true);
  if (rng.chance(0.05)) v = ` ${v}\t`;
  return v;
}

function hostLines(rng: Prng, ports: FuzzPorts): string[] {
  const shape = rng.weighted<'one' | 'none' | 'two'>([
    [85, 'one'],
    [5, 'none'],
    [10, 'two'],
  ]);
  if (shape === 'none') return [];
  if (shape === 'one') return [hostValue(rng, ports)];
  return [hostValue(rng, ports), hostValue(rng, ports)];
}

/** The pathPrefixes of the routes serving a host name (any case, trailing dot), for targets that get routed. */
function prefixesFor(name: string | undefined): string[] {
  const host = name?.trim().toLowerCase().replace(/:[^:\]]*$/, '').replace(/\.$/, '');
  return FUZZ_ROUTES.filter((r) => r.host === host).map((r) => r.pathPrefix);
}

/**
 * An origin-form target, built to straddle route prefixes with dot-segments and encodings.
 * Most start with a prefix of a route the request is addressed to (`preferred`), so that
 * the sidecar routes them and the interesting part, what follows the prefix, is exercised.
 */
function originTarget(rng: Prng, preferred: readonly string[]): string {
  if (rng.chance(0.03)) return rng.pick(ODD_TARGETS);
  const start = rng.next();
  let target = preferred.length && start < 0.65 ? rng.pick(preferred) : start < 0.8 ? rng.pick(PREFIXES) : rng.pick(OTHER_STARTS);
  const segments = rng.int(0, 5);
  for (let i = 0; i < segments; i++) {
    const sep = rng.chance(0.15) ? rng.pick(SEPARATORS) : '/';
    const segment = rng.chance(0.4) ? rng.pick(DOTS) : rng.chance(0.9) ? rng.pick(WORDS) : `%${rng.int(0, 255).toString(16).padStart(2, '0')}`;
    target += target.endsWith('/') && sep === '/' ? segment : sep + segment;
  }
  if (rng.chance(0.2)) target += rng.pick(QUERIES);
  if (rng.chance(0.08)) target += rng.pick(FRAGMENTS);
  return target;
}

function absoluteTarget(rng: Prng, ports: FuzzPorts): string {
  const scheme = rng.weighted<string>([
    [85, 'http'],
    [5, 'HTTP'],
    [8, 'https'],
    [2, 'ftp'],
  ]);
  const authority = rng.weighted<string>([
    [75, hostVariant(rng, rng.pick(ROUTE_HOSTS), true)],
    [10, `127.0.0.1:${ports.decoy}`],
    [4, `localhost:${ports.decoy}`],
    [4, 'evil.internal'],
    [3, `u:p@${rng.pick(ROUTE_HOSTS)}`],
    [2, ''],
    [2, `${rng.pick(ROUTE_HOSTS)}:${ports.decoy}`],
  ]);
  const path = rng.chance(0.05) ? rng.pick(['', '?q=1', '#f']) : originTarget(rng, prefixesFor(authority.slice(authority.lastIndexOf('@') + 1)));
  return `${scheme}://${authority}${path.startsWith('/') || path === '' || path.startsWith('?') || path.startsWith('#') ? path : `/${path}`}`;
}

function pickMethod(rng: Prng): string {
  const m = rng.weighted(COMMON_METHODS);
  if (m === 'RARE') return rng.pick(RARE_METHODS);
  if (m === 'BAD') return rng.pick(BAD_METHODS);
  return m;
}

const LONG = (rng: Prng, n: number) => 'L'.repeat(n - 8) + rng.int(10_000_000, 99_999_999);

/** Header lines besides Host, X-Fuzz-Id and the body framing. */
function otherHeaders(rng: Prng): string[] {
  const lines: string[] = [];
  const auth = rng.weighted<string>([
    [60, 'none'],
    [15, 'bearer'],
    [5, 'basic'],
    [7, 'duplicate'],
    [3, 'empty'],
    [5, 'upper'],
    [5, 'long'],
  ]);
  if (auth === 'bearer') lines.push('Authorization: Bearer app-own-token');
  if (auth === 'basic') lines.push('Authorization: Basic dXNlcjpwYXNz');
  if (auth === 'duplicate') lines.push('Authorization: Bearer app-one', 'authorization: Bearer app-two');
  if (auth === 'empty') lines.push('Authorization:');
  if (auth === 'upper') lines.push('AUTHORIZATION: Bearer app-upper');
  if (auth === 'long') lines.push(`Authorization: Bearer ${LONG(rng, rng.int(1000, 7000))}`);
  const connection = rng.weighted<string | undefined>([
    [50, undefined],
    [20, 'keep-alive'],
    [4, 'close'],
    [5, 'authorization'],
    [4, 'x-trace, Authorization'],
    [3, 'host'],
    [3, 'te'],
    [2, 'content-length'],
    [2, 'keep-alive, upgrade'],
    [3, 'upgrade'],
    [2, 'proxy-authorization, x-fuzz-note'],
  ]);
  if (connection !== undefined) lines.push(`${rng.chance(0.2) ? 'CONNECTION' : 'Connection'}: ${connection}`);
  if (connection?.includes('upgrade')) lines.push(`Upgrade: ${rng.pick(['websocket', 'h2c', 'foo/1'])}`);
  if (connection === 'te' || rng.chance(0.03)) lines.push('TE: trailers');
  if (rng.chance(0.05)) lines.push('Proxy-Authorization: Basic cHJveHk6c2VjcmV0');
  if (rng.chance(0.05)) lines.push('Proxy-Connection: keep-alive');
  if (rng.chance(0.05)) lines.push('X-Forwarded-Host: evil.internal');
  if (rng.chance(0.03)) lines.push('Forwarded: for=1.2.3.4;host=evil.internal;proto=https');
  if (rng.chance(0.03)) lines.push('Keep-Alive: timeout=5, max=1000');
  if (rng.chance(0.03)) lines.push('X-Fuzz-Note: x');
  if (rng.chance(0.05)) lines.push(`X-Long: ${LONG(rng, rng.int(2000, 8000))}`);
  // Past node's 16 KiB header limit: answered 431 or 400 before any routing.
  if (rng.chance(0.005)) lines.push(`X-Huge: ${LONG(rng, 20_000)}`);
  if (rng.chance(0.03)) lines.push(`${mixCase(rng, 'x-odd-name')}: ${rng.pick(['a\tb', '', ' spaced ', 'é'])}`);
  return lines;
}

/** A body smuggling attempt: a whole second request inside the first one's body. */
const SMUGGLED = (id: string) => `GET /admin HTTP/1.1\r\nHost: orders.internal\r\nX-Fuzz-Id: smuggled-${id}\r\n\r\n`;

/** Body framing lines and bytes, consistent with what node's parser accepts or refuses whole. */
function bodyOf(rng: Prng, method: string, id: string): { lines: string[]; body: string; expectContinue: boolean } {
  const wantsBody = ['POST', 'PUT', 'PATCH'].includes(method) ? rng.chance(0.9) : rng.chance(0.06);
  if (!wantsBody) return { lines: [], body: '', expectContinue: false };
  if (rng.chance(0.04)) {
    // Announced big, of which the lane sends only the head and a little: see hangUpAfter.
    return { lines: rng.chance(0.5) ? ['Content-Length: 1000000'] : ['Transfer-Encoding: chunked'], body: rng.chance(0.5) ? 'x'.repeat(100) : '100\r\nxxxx', expectContinue: false };
  }
  const payload = rng.chance(0.2) ? SMUGGLED(id) : rng.chance(0.05) ? LONG(rng, rng.int(1000, 30_000)) : `{"n":${rng.int(0, 1e6)}}`;
  const chunked = (p: string, ext = '', trailer = '') => `${p.length.toString(16)}${ext}\r\n${p}\r\n0\r\n${trailer}\r\n`;
  const shape = rng.weighted<string>([
    [50, 'cl'],
    [20, 'chunked'],
    [3, 'Chunked'],
    [3, 'gzip-chunked'],
    [3, 'te-and-cl'],
    [2, 'cl-twice-same'],
    [2, 'cl-twice-diff'],
    [3, 'cl-leading-zeros'],
    [5, 'cl-zero'],
    [4, 'chunked-ext-trailer'],
    [2, 'te-chunked-twice'],
    [3, 'te-tab'],
  ]);
  const L = payload.length;
  const expectContinue = rng.chance(0.05);
  const lines = expectContinue ? ['Expect: 100-continue'] : [];
  switch (shape) {
    case 'chunked':
      return { lines: [...lines, 'Transfer-Encoding: chunked'], body: chunked(payload), expectContinue };
    case 'Chunked':
      return { lines: [...lines, 'Transfer-Encoding: Chunked'], body: chunked(payload), expectContinue };
    case 'gzip-chunked':
      return { lines: [...lines, 'Transfer-Encoding: gzip, chunked'], body: chunked(payload), expectContinue };
    case 'te-and-cl':
      return { lines: [...lines, 'Transfer-Encoding: chunked', `Content-Length: ${L}`], body: chunked(payload), expectContinue };
    case 'cl-twice-same':
      return { lines: [...lines, `Content-Length: ${L}`, `Content-Length: ${L}`], body: payload, expectContinue };
    case 'cl-twice-diff':
      return { lines: [...lines, `Content-Length: ${L}`, `Content-Length: ${L + 1}`], body: `${payload}x`, expectContinue };
    case 'cl-leading-zeros':
      return { lines: [...lines, `Content-Length: 00${L}`], body: payload, expectContinue };
    case 'cl-zero':
      return { lines: [...lines, 'Content-Length: 0'], body: '', expectContinue };
    case 'chunked-ext-trailer':
      return { lines: [...lines, 'Transfer-Encoding: chunked', 'Trailer: X-T'], body: chunked(payload, ';ext=1', 'X-T: 1\r\n'), expectContinue };
    case 'te-chunked-twice':
      return { lines: [...lines, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], body: chunked(payload), expectContinue };
    case 'te-tab':
      return { lines: [...lines, 'Transfer-Encoding:\tchunked'], body: chunked(payload), expectContinue };
    default:
      return { lines: [...lines, `Content-Length: ${L}`], body: payload, expectContinue };
  }
}

/** Prefixes of the routes a request in this session is addressed to. */
function preferredPrefixes(session: FuzzSession, hosts: readonly string[]): string[] {
  if (session.mode === 'dedicated') return [FUZZ_ROUTES.find((r) => r.name === session.listener)!.pathPrefix];
  if (session.connectTo !== undefined) return prefixesFor(session.connectTo);
  return prefixesFor(hosts[0]);
}

/** Request `index` of `session`: always the same bytes for the same seed. */
export function generateRequest(seed: number, session: FuzzSession, index: number, ports: FuzzPorts): FuzzRequest {
  const rng = new Prng(seedFor(seed, 'request', session.index, index));
  const id = `${session.index}.${index}`;
  const method = pickMethod(rng);
  const hosts = hostLines(rng, ports);
  const target = session.mode === 'absolute' && rng.chance(0.92) ? absoluteTarget(rng, ports) : originTarget(rng, preferredPrefixes(session, hosts));
  const version = rng.chance(0.05) ? 'HTTP/1.0' : 'HTTP/1.1';
  const { lines: framing, body } = bodyOf(rng, method, id);
  const truncated = framing.includes('Content-Length: 1000000') || (framing.includes('Transfer-Encoding: chunked') && body.startsWith('100\r\n'));
  const lines = [`X-Fuzz-Id: ${id}`, ...otherHeaders(rng), ...framing];
  // Host first (as clients send it), or somewhere in the middle.
  const position = rng.chance(0.8) ? 0 : rng.int(0, lines.length);
  lines.splice(position, 0, ...hosts.map((h) => `${rng.chance(0.1) ? 'host' : 'Host'}:${h.startsWith(' ') ? '' : ' '}${h}`));
  const head = `${method} ${target} ${version}\r\n${lines.join('\r\n')}\r\n\r\n`;
  return {
    id,
    session,
    method,
    target,
    hosts,
    // latin1: the raw bytes the generator chose, one byte per character (the non-ASCII words too).
    bytes: Buffer.from(head + body, 'latin1'),
    pipelineNext: !truncated && rng.chance(0.08),
    ...(truncated ? { hangUpAfter: Buffer.byteLength(head + body, 'latin1'), hangUpDelayMs: rng.int(0, 30) } : {}),
  };
}

/** The CONNECT request that opens a tunnel session. */
export function connectPreamble(session: FuzzSession): Buffer {
  return Buffer.from(`CONNECT ${session.connectTo} HTTP/1.1\r\nHost: ${session.connectTo}\r\n\r\n`, 'latin1');
}

/**
 * Header handling for forwarded messages.
 *
 * RFC 9110 section 7.6.1: a proxy removes the hop-by-hop fields (Connection and every
 * field it names, plus the well-known ones below) before forwarding. Proxy-* fields are
 * meant for us and are consumed here too. Client-supplied fields are stripped *before*
 * we add our own, so a client cannot use `Connection: authorization` to remove the
 * token we inject (the fastify-reply-from advisory pattern).
 */
import type { IncomingHttpHeaders } from 'node:http';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // undici refuses `expect`; node:http has already answered any 100-continue for us.
  'expect',
  // Set by us from the upstream's URL (or kept explicitly with preserveHost).
  'host',
]);

function connectionTokens(value: string | undefined): Set<string> | undefined {
  // Fast path: the usual values name no other field.
  if (!value || value === 'keep-alive' || value === 'close' || value === 'Keep-Alive') return undefined;
  const names = value.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  return names.length ? new Set(names) : undefined;
}

export interface ForwardHeaderOptions {
  /** Lower-case name of the header that carries the token, e.g. `authorization`. */
  readonly tokenHeader: string;
  /** Drop the app's own value of tokenHeader (it is replaced by ours). */
  readonly dropTokenHeader: boolean;
  /** An upgrade carries no body: what follows its head belongs to the new protocol. */
  readonly dropBodyFraming?: boolean;
  /** Drop the app's own `DPoP` field: ours is the one proof a request may carry (RFC 9449 4.3 item 1). */
  readonly dropDpopHeader?: boolean;
}

/**
 * Filters node's flat rawHeaders ([name, value, name, value, ...]) for forwarding.
 * Returns a flat array undici accepts as-is. HTTP/2 pseudo-header fields (RFC 9113 8.3,
 * `:path`, `:authority`...) describe the inbound hop only; HTTP/1.1 names never start with ":".
 */
export function forwardRequestHeaders(rawHeaders: readonly string[], connection: string | undefined, options: ForwardHeaderOptions): string[] {
  const named = connectionTokens(connection);
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower.startsWith('proxy-') || lower.startsWith(':') || named?.has(lower)) {
      continue;
    }
    if (options.dropTokenHeader && lower === options.tokenHeader) continue;
    if (options.dropBodyFraming && (lower === 'content-length' || lower === 'transfer-encoding')) continue;
    if (options.dropDpopHeader && lower === 'dpop') continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  return out;
}

/** Response headers from undici (lower-cased object) minus the hop-by-hop ones. */
export function forwardResponseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = connectionTokens(typeof headers['connection'] === 'string' ? headers['connection'] : undefined);
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if ((HOP_BY_HOP.has(name) && name !== 'host') || name.startsWith('proxy-') || named?.has(name)) continue;
    out[name] = value;
  }
  return out;
}

export function headerValue(rawHeaders: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === lowerName) return rawHeaders[i + 1];
  }
  return undefined;
}

/**
 * Trailer fields to pass on (either direction): not the hop-by-hop ones, nor any a trailer
 * must not carry (RFC 9110 6.5.1: framing, routing, authentication; RFC 9113 8.1: no
 * pseudo-header fields), nor `tokenHeader` (a token may only travel where the pipeline puts it).
 */
export function forwardTrailers(trailers: IncomingHttpHeaders, tokenHeader = 'authorization'): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in trailers) {
    const value = trailers[name];
    if (value === undefined || NOT_IN_TRAILERS.has(name) || HOP_BY_HOP.has(name) || name.startsWith(':') || name.startsWith('proxy-') || name === tokenHeader) continue;
    out[name] = value;
  }
  return out;
}

const NOT_IN_TRAILERS = new Set(['content-length', 'content-encoding', 'content-type', 'content-range', 'authorization', 'cookie', 'set-cookie', 'www-authenticate']);

/**
 * Checks every local endpoint makes before looking at a request's content. These
 * listeners hand out raw tokens, so they refuse what looks like a request that was not
 * made by a program in this pod on purpose.
 */
import { isIP } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * DNS rebinding guard: a web page whose name resolves to 127.0.0.1 could otherwise
 * read these endpoints as same-origin. Real clients address the listener by IP literal
 * or `localhost` (plus, for GCE, the metadata server's own names).
 */
export function hostAllowed(host: string | undefined, extraNames: ReadonlySet<string> = new Set()): boolean {
  if (host === undefined) return true; // HTTP/1.0 without Host: no browser sends that
  const name = hostName(host).toLowerCase().replace(/\.$/, '');
  return name === 'localhost' || isIP(name) !== 0 || extraNames.has(name);
}

function hostName(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']') < 0 ? undefined : host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

/**
 * GCE's metadata server and Azure IMDS both refuse requests carrying X-Forwarded-For:
 * it means a proxy relayed the request, typically on behalf of someone outside (SSRF).
 */
export function wasForwarded(headers: IncomingHttpHeaders): boolean {
  return headers['x-forwarded-for'] !== undefined;
}

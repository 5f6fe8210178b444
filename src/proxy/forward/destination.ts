/**
 * Where a forward-proxy request is going: parsed from an absolute-form request target
 * (RFC 9112 3.2.2, `GET http://host:port/path`) or an authority-form one (RFC 9112 3.2.3,
 * `CONNECT host:port`). Parsed by hand rather than with `new URL()`, which would normalise
 * the path (dot segments, percent-encoding) that a proxy must forward unchanged.
 */
import { isIP } from 'node:net';
import { ForwardTargetError } from '../../errors.js';
import { splitHost } from '../routing.js';

export type Scheme = 'http' | 'https';

export const DEFAULT_PORT: Readonly<Record<Scheme, number>> = { http: 80, https: 443 };

export interface Destination {
  /** Lower-case host name without a trailing dot; an IPv6 literal keeps its brackets. */
  readonly name: string;
  readonly port: number;
}

/** The host name to dial, SAN to issue and SNI to send: brackets off. */
export function dialName(destination: Destination): string {
  return destination.name.startsWith('[') ? destination.name.slice(1, -1) : destination.name;
}

/** `host` or `host:port`, the port omitted when it is the scheme's default (RFC 9110 7.2). */
export function authority(destination: Destination, scheme: Scheme): string {
  return destination.port === DEFAULT_PORT[scheme] ? destination.name : `${destination.name}:${destination.port}`;
}

/** Parses `host[:port]`; `defaultPort` undefined means the port is required (CONNECT). */
export function parseAuthority(value: string, defaultPort: number | undefined): Destination {
  if (value.includes('@')) throw new ForwardTargetError('the request target must not carry userinfo (RFC 9110 4.2.4)');
  const { name: raw, port: portText } = splitHost(value);
  const name = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  if (!name || /[\s/\\?#%]/.test(name) || (name.startsWith('[') && isIP(name.slice(1, -1)) !== 6)) {
    throw new ForwardTargetError(`"${value.slice(0, 200)}" is not a valid host`);
  }
  if (portText === undefined || portText === '') {
    if (defaultPort === undefined) throw new ForwardTargetError('CONNECT needs host:port (RFC 9112 3.2.3)');
    return { name, port: defaultPort };
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) throw new ForwardTargetError(`"${portText.slice(0, 20)}" is not a valid port`);
  return { name, port };
}

export interface AbsoluteTarget {
  readonly scheme: Scheme;
  readonly destination: Destination;
  /** Origin-form target: the path and query as the app sent them, "/" when empty. */
  readonly path: string;
}

const ABSOLUTE_FORM = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^#]*)/;

/** True for an absolute-form request target (anything but origin-form "/..." and "*"). */
export function isAbsoluteForm(target: string | undefined): target is string {
  return target !== undefined && !target.startsWith('/') && target !== '*';
}

export function parseAbsoluteForm(target: string): AbsoluteTarget {
  const match = ABSOLUTE_FORM.exec(target);
  if (!match) throw new ForwardTargetError('the request target is neither origin-form nor an http(s) absolute URI');
  const scheme = match[1]!.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') throw new ForwardTargetError(`the forward proxy speaks http and https, not "${scheme.slice(0, 20)}"`);
  const rest = match[3]!;
  // RFC 9112 3.2.1: an empty path becomes "/" (also before a query).
  const path = rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest;
  return { scheme, destination: parseAuthority(match[2]!, DEFAULT_PORT[scheme]), path };
}

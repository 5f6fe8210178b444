/**
 * The value types of the configuration, each validated and normalised once: listen
 * addresses, durations, route hosts, URLs, secrets from one source. schema.ts arranges
 * them under the keys a user writes.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseListenAddress, type ListenAddress } from '../http/listen-address.js';

export const listenAddress = z.string().transform((value, ctx): ListenAddress => {
  // Accept "host:port", "[v6]:port" and ":port" (loopback), nothing that needs DNS at bind time.
  const address = parseListenAddress(value);
  // Brackets hold an IP literal only, so "[localhost]:80" stays a malformed address.
  if (!address || (value.startsWith('[') && !/^[0-9a-fA-F:.]+$/.test(address.host))) {
    ctx.addIssue({ code: 'custom', message: `expected HOST:PORT (e.g. 127.0.0.1:15001), got "${value}"` });
    return z.NEVER;
  }
  if (address.host !== 'localhost' && isIP(address.host) === 0) {
    ctx.addIssue({ code: 'custom', message: `listen host must be an IP address or localhost, got "${address.host}"` });
    return z.NEVER;
  }
  return address;
});

export const seconds = (min: number) => z.number().finite().min(min);

export const nonEmpty = z.string().min(1, 'must not be empty');

/**
 * A route's host as the app names it: a DNS name or IP literal, optionally with a port,
 * nothing else (issue 10: "http://orders.internal", "orders.internal/api", "Orders Internal"
 * and "*.example.internal" were accepted and never matched). Lower-cased, trailing dot removed.
 */
export const routeHost = z.string().transform((value, ctx): string => {
  const v = value.trim().toLowerCase().replace(/\.(?=:\d+$|$)/, '');
  const match = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*))(?::(\d{1,5}))?$/.exec(v);
  const port = match?.[3] === undefined ? 1 : Number(match[3]);
  if (!match || (match[1] !== undefined && isIP(match[1]) !== 6) || port < 1 || port > 65535 || v.length > 260) {
    const hint = /^[a-z][a-z0-9+.-]*:\/\//.test(v)
      ? ' (no scheme: the scheme comes from how the app connects)'
      : v.includes('/')
        ? ' (no path: use pathPrefix)'
        : v.includes('*')
          ? ' (wildcards are not supported: list each host as its own route)'
          : '';
    ctx.addIssue({ code: 'custom', message: `expected a host name or IP address with an optional :port, got "${value.slice(0, 100)}"${hint}` });
    return z.NEVER;
  }
  return v;
});

export const stringList = z
  .union([nonEmpty, z.array(nonEmpty).min(1)])
  .transform((v) => (Array.isArray(v) ? v : [v]));

export const httpUrl = z.string().transform((value, ctx): URL => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: `not a valid URL: "${value}"` });
    return z.NEVER;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: `must be an http:// or https:// URL, got "${url.protocol}"` });
    return z.NEVER;
  }
  if (url.username || url.password) {
    ctx.addIssue({ code: 'custom', message: 'must not carry credentials; use the clientAuth settings' });
    return z.NEVER;
  }
  return url;
});

/** A secret given inline, from a file, or from an environment variable: exactly one. */
export const secretFields = { value: nonEmpty.optional(), file: nonEmpty.optional(), env: nonEmpty.optional() };

export function exactlyOneSource(v: { value?: string | undefined; file?: string | undefined; env?: string | undefined }, ctx: z.RefinementCtx): void {
  const given = [v.value, v.file, v.env].filter((x) => x !== undefined).length;
  if (given !== 1) ctx.addIssue({ code: 'custom', message: 'give exactly one of "file", "env" or "value"' });
}

export const secretSource = z.strictObject(secretFields).superRefine(exactlyOneSource);

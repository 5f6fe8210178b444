/**
 * Where the forward proxy may relay unrouted traffic (CONNECT splices, absolute-form
 * passthrough), judged on the address actually dialled, after DNS:
 *   - never back into one of the sidecar's own listeners (issue 10 item 10: 300 nested
 *     CONNECTs to itself in one 13.5 KB write held 600 descriptors), whatever name the app
 *     used: 508 ERR_FORWARD_LOOP;
 *   - with proxy.allowNonLoopback, never to a loopback, link-local or unspecified address
 *     (issue 10 item 11: a remote caller reached the token endpoint and the metadata
 *     emulation, which trust loopback callers): 403 ERR_FORWARD_DENIED.
 * A loop that no address reveals (a port mapping back to the sidecar, say) is still caught
 * where it arrives: an accepted connection coming from one of the sidecar's own relay
 * sockets, or a passed-through request that already carries this sidecar's Via pseudonym
 * (RFC 9110 7.6.3), is refused.
 */
import { randomBytes } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP, type LookupFunction, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Duplex } from 'node:stream';
import type { ListenAddress } from '../../config/schema.js';
import { ForwardDeniedError, ForwardLoopError, type SidecarError } from '../../errors.js';

export interface DialPolicy {
  /** A listener of this sidecar, by the address it is actually bound to. */
  addListener(address: ListenAddress): void;
  /** A listener closed (a configuration reload moved or removed it). */
  removeListener(address: ListenAddress): void;
  /** Why dialling `address` (an IP) on `port` is refused, if it is. */
  refusal(address: string, port: number): SidecarError | undefined;
  /** refusal() for a host that is an IP literal (net.connect never calls the lookup hook for one). */
  literalRefusal(host: string, port: number): SidecarError | undefined;
  /** A DNS lookup hook for net.connect / tls.connect that refuses what refusal() refuses. */
  lookup(port: number): LookupFunction;
  /** Remembers a connected relay socket until it closes. */
  trackRelay(socket: Socket): void;
  /** `received-protocol received-by` this sidecar appends to Via on what it passes through. */
  via(httpVersion: string): string;
  /** For every listener: a request that is one of this sidecar's own relays coming back. */
  admit(req: IncomingMessage): SidecarError | undefined;
}

export interface DialPolicyOptions {
  /** proxy.allowNonLoopback: other hosts may call the proxy, so it must not relay them to local-only services. */
  readonly refuseLocalDestinations: boolean | (() => boolean);
}

/** Addresses only this host (or this link) can reach: loopback, link-local, unspecified. */
const LOCAL_ONLY = new BlockList();
LOCAL_ONLY.addSubnet('127.0.0.0', 8, 'ipv4');
LOCAL_ONLY.addSubnet('169.254.0.0', 16, 'ipv4');
// 0.0.0.0/8 "this network" (RFC 1122 3.2.1.3): Linux delivers a connect to 0.0.0.0 locally.
LOCAL_ONLY.addSubnet('0.0.0.0', 8, 'ipv4');
LOCAL_ONLY.addAddress('::1', 'ipv6');
LOCAL_ONLY.addAddress('::', 'ipv6');
LOCAL_ONLY.addSubnet('fe80::', 10, 'ipv6');
// The same IPv4 ranges written as IPv4-mapped IPv6 (::ffff:127.0.0.1 reaches 127.0.0.1).
LOCAL_ONLY.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');
LOCAL_ONLY.addSubnet('::ffff:169.254.0.0', 112, 'ipv6');
LOCAL_ONLY.addSubnet('::ffff:0.0.0.0', 104, 'ipv6');

export function isLocalOnlyAddress(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && LOCAL_ONLY.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

export function createDialPolicy(options: DialPolicyOptions): DialPolicy {
  const listeners: ListenAddress[] = [];
  // A function when a configuration reload may change it (proxy.allowNonLoopback, issue 13).
  const { refuseLocalDestinations } = options;
  const refuseLocal = typeof refuseLocalDestinations === 'function' ? refuseLocalDestinations : () => refuseLocalDestinations;
  const relays = new Set<string>();
  // Per sidecar, random: names no host, and lets two sidecars chained on purpose tell their Via apart.
  const pseudonym = `sts-sidecar-${randomBytes(4).toString('hex')}`;

  const isOwnListener = (address: string, port: number): boolean =>
    listeners.some((l) => l.port === port && (sameAddress(l.host, address) || (isUnspecified(l.host) && isThisHost(address))));

  const refusal = (address: string, port: number): SidecarError | undefined => {
    if (refuseLocal() && isLocalOnlyAddress(address)) {
      return new ForwardDeniedError('the forward proxy does not relay to loopback, link-local or unspecified addresses when proxy.allowNonLoopback is set');
    }
    if (isOwnListener(address, port)) return new ForwardLoopError('the destination is one of this sidecar\'s own listeners');
    return undefined;
  };

  return {
    addListener: (address) => void listeners.push(address),
    removeListener(address) {
      const i = listeners.findIndex((l) => l.host === address.host && l.port === address.port);
      if (i >= 0) listeners.splice(i, 1);
    },
    refusal,
    literalRefusal: (host, port) => (isIP(host) ? refusal(host, port) : undefined),
    lookup: (port) => guardedLookup((address) => refusal(address, port)),
    trackRelay(socket) {
      const key = endpointKey(socket.localAddress, socket.localPort);
      if (!key) return;
      relays.add(key);
      socket.once('close', () => relays.delete(key));
    },
    via: (httpVersion) => `${httpVersion} ${pseudonym}`,
    admit(req) {
      // Issue 15: no key string per request while this sidecar has no relay open.
      const socket: Duplex & { remoteAddress?: string; remotePort?: number } = req.socket;
      const from = relays.size === 0 ? undefined : endpointKey(socket.remoteAddress, socket.remotePort);
      if (from && relays.has(from)) return new ForwardLoopError('this connection is one of this sidecar\'s own relays coming back');
      const via = req.headers.via;
      if (via !== undefined && via.toLowerCase().includes(pseudonym)) return new ForwardLoopError('the request already passed through this sidecar (Via)');
      return undefined;
    },
  };
}

/** dns.lookup, then refuse when any address it returned is refused (a name may resolve to several). */
function guardedLookup(check: (address: string) => SidecarError | undefined): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      for (const a of addresses) {
        const refused = check(a.address);
        if (refused) return callback(refused as unknown as NodeJS.ErrnoException, '', 0);
      }
      const first = addresses[0];
      if (options.all) return (callback as unknown as (e: null, all: LookupAddress[]) => void)(null, addresses);
      if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '', 0);
      callback(null, first.address, first.family);
    });
  };
}

/** "127.0.0.1" and "::ffff:127.0.0.1" are one peer (a dual-stack listener reports the latter). */
function normalise(address: string): string {
  const a = address.toLowerCase();
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

function sameAddress(a: string, b: string): boolean {
  return normalise(a) === normalise(b);
}

function isUnspecified(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** An address of this host: loopback, unspecified or one of its interfaces'. */
function isThisHost(address: string): boolean {
  const a = normalise(address);
  if (isLocalOnlyAddress(a) && !a.startsWith('169.254.') && !a.startsWith('fe80')) return true;
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => normalise(i.address) === a));
}

function endpointKey(address: string | undefined, port: number | undefined): string | undefined {
  return address && port ? `${normalise(address)} ${port}` : undefined;
}

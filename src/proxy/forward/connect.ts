/**
 * CONNECT (RFC 9110 9.3.6) on the proxy listener. What happens to a tunnel depends on its
 * destination and on its first bytes:
 *   - no route serves host:port: spliced untouched (no token), or 403 under `forward.unmatched: deny`;
 *   - a route does, and the app speaks plain HTTP in the tunnel (undici's proxy agents CONNECT
 *     even for http:// targets): parsed as HTTP, so each request gets its route's token;
 *   - a route does and the app starts TLS: with `intercept: true` the sidecar terminates it with
 *     a leaf from the interception CA and parses HTTP inside; otherwise the tunnel is spliced
 *     untouched and a log line says that no token could be added.
 * The sidecar never authenticates the app (it listens on loopback): Proxy-Authorization on the
 * CONNECT is consumed and goes nowhere.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { ForwardDeniedError, SidecarError } from '../../errors.js';
import { sendErrorOnSocket, upstreamError } from '../respond.js';
import type { ProxyContext } from '../reverse-proxy.js';
import type { RouteTable } from '../routing.js';
import { authority, DEFAULT_PORT, dialName, parseAuthority, type Destination, type Scheme } from './destination.js';
import type { DialPolicy } from './dial-policy.js';
import type { LeafCertificateCache } from './leaf-cache.js';
import { CONNECT_ESTABLISHED, firstBytes, ReplayedSocket, splice } from './tunnel.js';
import type { ForwardObserver, ForwardResult, ForwardRoute } from './types.js';

/** RFC 8446 5.1: a TLS connection opens with a handshake record, ContentType 22. */
const TLS_HANDSHAKE = 0x16;

export interface ConnectHandlerOptions {
  readonly table: RouteTable<ForwardRoute>;
  readonly unmatched: 'tunnel' | 'deny';
  /** Absent when no route intercepts. */
  readonly leaves: LeafCertificateCache | undefined;
  readonly ctx: ProxyContext;
  readonly observer: ForwardObserver;
  /** Where an untouched tunnel may be spliced to (issue 10 items 10, 11). */
  readonly policy: DialPolicy;
  /** limits.idleTimeoutSeconds for spliced tunnels. */
  readonly idleTimeoutMs: number;
  /** Hands a tunnel that carries HTTP (plain, or decrypted) to the sidecar's HTTP parser. */
  serveHttp(socket: Duplex, scheme: Scheme, destination: Destination): void;
}

export function createConnectHandler(options: ConnectHandlerOptions): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const { table, ctx, observer } = options;
  const deny = options.unmatched === 'deny';

  const refuse = (socket: Duplex, err: SidecarError) => {
    observer.forwarded('connect', refusedResult(err));
    sendErrorOnSocket(socket, err, undefined);
    // Read (and drop) until the app hangs up: a paused half-open socket would never close.
    socket.resume();
  };

  const tunnelUntouched = (socket: Duplex, destination: Destination, head: Buffer, announce: boolean) => {
    splice(socket, destination, {
      head,
      announce,
      policy: options.policy,
      idleTimeoutMs: options.idleTimeoutMs,
      onConnectError(err) {
        // A refusal of the dial policy is the sidecar's answer (403, 508), not an unreachable destination.
        const refused = err instanceof SidecarError;
        observer.forwarded('connect', refused ? refusedResult(err) : 'unreachable');
        const e = refused ? err : upstreamError(err, `${destination.name}:${destination.port}`);
        if (announce) {
          sendErrorOnSocket(socket, e, undefined);
          // Read (and drop) until the app hangs up, as refuse() does.
          socket.resume();
        } else socket.destroy();
        if (ctx.logger.isLevelEnabled('debug')) ctx.logger.debug({ destination: `${destination.name}:${destination.port}`, code: e.code }, refused ? 'CONNECT destination refused' : 'CONNECT destination unreachable');
      },
    });
  };

  const intercept = (socket: Duplex, first: Buffer, destination: Destination, route: ForwardRoute, leaves: LeafCertificateCache) => {
    let tls: TLSSocket;
    try {
      tls = new TLSSocket(new ReplayedSocket(socket, first), {
        isServer: true,
        secureContext: leaves.contextFor(dialName(destination)),
        // The decrypted side is parsed by node:http, which speaks HTTP/1.1 only.
        ALPNProtocols: ['http/1.1'],
      });
    } catch (err) {
      // Issuing the leaf failed (e.g. a loaded CA key the signer cannot use): no tunnel, no crash.
      socket.destroy();
      const suppressed = ctx.failureLogs.admit(`${route.name} intercept-leaf`);
      if (suppressed !== undefined) ctx.logger.error({ route: route.name, err, suppressed }, 'cannot issue a leaf certificate for an intercepted host');
      return;
    }
    tls.once('secure', () => options.serveHttp(tls, 'https', destination));
    tls.on('error', (err: NodeJS.ErrnoException) => {
      tls.destroy();
      const suppressed = ctx.failureLogs.admit(`${route.name} intercept-handshake`);
      if (suppressed === undefined) return;
      ctx.logger.warn(
        { route: route.name, code: err.code ?? 'ERR_TLS', suppressed },
        'TLS with the app failed on an intercepted tunnel (does the app trust the interception CA?)',
      );
    });
  };

  return (req, socket, head) => {
    // Nothing is read until we know what the tunnel is for; bytes wait in the kernel.
    socket.pause();
    socket.on('error', () => socket.destroy());
    let destination: Destination;
    try {
      // RFC 9112 3.2.3: authority-form, port required. Host is not needed (HTTP/1.0
      // clients such as python's urllib send none), and not used: the target is authoritative.
      destination = parseAuthority(req.url ?? '', undefined);
    } catch (err) {
      return refuse(socket, err as SidecarError);
    }
    const forHttp = table.forDestination(destination.name, destination.port, DEFAULT_PORT.http);
    const forHttps = table.forDestination(destination.name, destination.port, DEFAULT_PORT.https);
    if (!forHttp && !forHttps) {
      if (deny) {
        return refuse(socket, new ForwardDeniedError(`no route for ${destination.name}:${destination.port} and forward.unmatched is deny`));
      }
      observer.forwarded('connect', 'tunnelled');
      return tunnelUntouched(socket, destination, head, true);
    }

    // A route serves this destination: the sidecar answers the CONNECT itself, then looks at
    // what the app sends to decide between parsing, intercepting and splicing.
    socket.write(CONNECT_ESTABLISHED);
    firstBytes(socket, head, (first) => {
      if (!first) return void socket.destroy();
      if (first[0] !== TLS_HANDSHAKE) {
        observer.forwarded('connect', 'http');
        socket.unshift(first);
        options.serveHttp(socket, 'http', destination);
        socket.resume();
        return;
      }
      const route = forHttps?.[0];
      if (!route) {
        // TLS to a port only an http route serves (e.g. :80): not a destination any route names.
        if (deny) {
          observer.forwarded('connect', 'denied');
          return void socket.destroy();
        }
        observer.forwarded('connect', 'tunnelled');
        return tunnelUntouched(socket, destination, first, false);
      }
      if (route.intercept && options.leaves) {
        observer.forwarded('connect', 'intercepted');
        return intercept(socket, first, destination, route, options.leaves);
      }
      observer.forwarded('connect', 'not_intercepted');
      const suppressed = ctx.failureLogs.admit(`${route.name} not-intercepted`);
      if (suppressed !== undefined) {
        ctx.logger.warn(
          { route: route.name, destination: authority(destination, 'https'), suppressed },
          'HTTPS tunnel to a routed host passed through untouched: no token could be added (set intercept: true on the route to inject it)',
        );
      }
      tunnelUntouched(socket, destination, first, false);
    });
  };
}

/** The forward-proxy result for the sidecar refusing a destination. */
export function refusedResult(err: SidecarError): ForwardResult {
  if (err.code === 'ERR_FORWARD_LOOP') return 'loop';
  return err.status === 403 ? 'denied' : 'invalid';
}

/**
 * CONNECT (RFC 9110 9.3.6) on the proxy listener. What happens to a tunnel depends on its
 * destination and on its first bytes:
 *   - no route serves host:port: spliced untouched (no token), or 403 under `forward.unmatched: deny`;
 *   - a route does, and the app speaks plain HTTP in the tunnel (undici's proxy agents CONNECT
 *     even for http:// targets, gRPC clients behind http_proxy / grpc_proxy too): parsed as
 *     HTTP/1.1, or as HTTP/2 when its first bytes are the preface (issue 12, RFC 9113 3.3), so
 *     each request gets its route's token;
 *   - a route does and the app starts TLS: with `intercept: true` the sidecar terminates it with
 *     a leaf from the interception CA, offering `h2` and `http/1.1` (RFC 7301), and serves the
 *     protocol negotiated; otherwise the tunnel is spliced
 *     untouched and a log line says that no token could be added. Such a destination is dialled
 *     before the 200 (issue 10 item 21), so an unreachable one gets 502 as an unrouted one does.
 * The sidecar never authenticates the app (it listens on loopback): Proxy-Authorization on the
 * CONNECT is consumed and goes nowhere.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { ForwardDeniedError, SidecarError } from '../../errors.js';
import { sniffProtocol, type SniffedProtocol } from '../h2/preface.js';
import { sendErrorOnSocket, upstreamError } from '../respond.js';
import type { ProxyContext } from '../context.js';
import type { RouteTable } from '../routing.js';
import { authority, DEFAULT_PORT, dialName, parseAuthority, type Destination, type Scheme } from './destination.js';
import type { DialPolicy } from './dial-policy.js';
import type { LeafCertificateCache } from './leaf-cache.js';
import { CONNECT_ESTABLISHED, FIRST_BYTES_TIMEOUT_MS, firstBytes, ReplayedSocket, splice, type OpenTunnel } from './tunnel.js';
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
  /**
   * Hands a tunnel that carries HTTP (plain, or decrypted) to the sidecar's HTTP/1.1 parser or
   * its HTTP/2 sessions. A plain socket arrives paused, its first bytes put back.
   */
  serveHttp(socket: Duplex, scheme: Scheme, destination: Destination, protocol: SniffedProtocol): void;
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

  /**
   * The destination refused or could not be found (502), or the dial policy refused it (the
   * sidecar's own 403 or 508, issue 10 items 10, 11): an answer when the CONNECT is still
   * unanswered, else a close.
   */
  const unreachable = (socket: Duplex, destination: Destination, err: Error, answer: boolean) => {
    const refused = err instanceof SidecarError;
    observer.forwarded('connect', refused ? refusedResult(err) : 'unreachable');
    const e = refused ? err : upstreamError(err, `${destination.name}:${destination.port}`);
    if (answer) {
      sendErrorOnSocket(socket, e, undefined);
      // Read (and drop) until the app hangs up, as refuse() does.
      socket.resume();
    } else socket.destroy();
    if (ctx.logger.isLevelEnabled('debug')) ctx.logger.debug({ destination: `${destination.name}:${destination.port}`, code: e.code }, refused ? 'CONNECT destination refused' : 'CONNECT destination unreachable');
  };

  /** Splices the tunnel to its destination; counted once, as `result` or as unreachable (issue 10 item 21). */
  const tunnelUntouched = (socket: Duplex, destination: Destination, head: Buffer, announce: boolean, result: ForwardResult) => {
    splice(socket, destination, {
      head,
      announce,
      policy: options.policy,
      idleTimeoutMs: options.idleTimeoutMs,
      onOpen(tunnel) {
        observer.forwarded('connect', result);
        tunnel.join(head);
      },
      onConnectError: (err) => unreachable(socket, destination, err, announce),
    });
  };

  /**
   * Issue 10 item 21: a tunnel an https route serves without intercepting may end as an
   * untouched splice, so its destination is dialled before the 200, and the connection kept
   * for the splice. When an http route serves the same host:port, plain HTTP in the tunnel
   * needs no destination (the route's upstream serves it), so a failed dial still gets the 200.
   */
  const dialThenInspect = (socket: Duplex, head: Buffer, destination: Destination, forHttps: readonly ForwardRoute[], servesHttp: boolean) => {
    splice(socket, destination, {
      head,
      announce: true,
      policy: options.policy,
      idleTimeoutMs: options.idleTimeoutMs,
      onOpen: (tunnel) => inspect(socket, head, destination, forHttps, tunnel),
      onConnectError(err) {
        if (!servesHttp) return unreachable(socket, destination, err, true);
        socket.write(CONNECT_ESTABLISHED);
        inspect(socket, head, destination, forHttps, undefined, err);
      },
    });
  };

  const intercept = (socket: Duplex, first: Buffer, destination: Destination, route: ForwardRoute, leaves: LeafCertificateCache) => {
    let tls: TLSSocket;
    try {
      tls = new TLSSocket(new ReplayedSocket(socket, first), {
        isServer: true,
        secureContext: leaves.contextFor(dialName(destination)),
        // RFC 7301 3.2: the server picks by its own preference among the client's offers;
        // h2 first, as gRPC clients offer only h2 and browsers-like clients offer both.
        ALPNProtocols: ['h2', 'http/1.1'],
      });
    } catch (err) {
      // Issuing the leaf failed (e.g. a loaded CA key the signer cannot use): no tunnel, no crash.
      socket.destroy();
      const suppressed = ctx.failureLogs.admit(`${route.name} intercept-leaf`);
      if (suppressed !== undefined) ctx.logger.error({ route: route.name, err, suppressed }, 'cannot issue a leaf certificate for an intercepted host');
      return;
    }
    // Settled once the handshake completed or its failure was logged: after the handshake an
    // error or a close is the connection's, not a TLS failure to explain.
    let settled = false;
    const handshakeFailed = (code: string | undefined) => {
      if (settled) return;
      settled = true;
      const failure = describeHandshakeFailure(code);
      const suppressed = ctx.failureLogs.admit(`${route.name} intercept-${failure.reason}`);
      if (suppressed === undefined) return;
      ctx.logger.warn({ route: route.name, ...(code ? { code } : {}), reason: failure.reason, suppressed }, failure.message);
    };
    tls.once('secure', () => {
      settled = true;
      // A client that offered no ALPN at all speaks HTTP/1.1 (RFC 9113 3.2 requires h2 to be negotiated).
      options.serveHttp(tls, 'https', destination, tls.alpnProtocol === 'h2' ? 'h2' : 'h1');
    });
    tls.on('error', (err: NodeJS.ErrnoException) => {
      tls.destroy();
      handshakeFailed(err.code ?? 'ERR_TLS');
    });
    // Closed mid-handshake with no alert: what a Node.js client that rejects the certificate does.
    tls.once('close', () => handshakeFailed(undefined));
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
      return tunnelUntouched(socket, destination, head, true, 'tunnelled');
    }

    // A route serves this destination: the sidecar answers the CONNECT itself, then looks at
    // what the app sends to decide between parsing, intercepting and splicing.
    const https = forHttps?.[0];
    if (forHttps && https && !(https.intercept && options.leaves)) return dialThenInspect(socket, head, destination, forHttps, forHttp !== undefined);
    socket.write(CONNECT_ESTABLISHED);
    inspect(socket, head, destination, forHttps, undefined);
  };

  /**
   * Decides on the app's first bytes. `dialled` is the destination's connection when it was
   * dialled before the 200; `dialError` why that dial failed (the 200 was still owed to plain HTTP).
   */
  function inspect(
    socket: Duplex,
    head: Buffer,
    destination: Destination,
    forHttps: readonly ForwardRoute[] | undefined,
    dialled: OpenTunnel | undefined,
    dialError?: Error,
  ): void {
    firstBytes(socket, head, (first) => {
      if (!first) return void socket.destroy();
      if (first[0] !== TLS_HANDSHAKE) {
        dialled?.release();
        observer.forwarded('connect', 'http');
        // HTTP/1.1, or HTTP/2 with prior knowledge (its preface), decided on the first bytes.
        return sniffProtocol(socket, first, FIRST_BYTES_TIMEOUT_MS, (protocol) => {
          if (!protocol || socket.destroyed) return void socket.destroy();
          options.serveHttp(socket, 'http', destination, protocol);
          if (protocol === 'h1') socket.resume();
        });
      }
      const route = forHttps?.[0];
      if (!route) {
        // TLS to a port only an http route serves (e.g. :80): not a destination any route names.
        if (deny) {
          observer.forwarded('connect', 'denied');
          return void socket.destroy();
        }
        return tunnelUntouched(socket, destination, first, false, 'tunnelled');
      }
      if (route.intercept && options.leaves) {
        observer.forwarded('connect', 'intercepted');
        return intercept(socket, first, destination, route, options.leaves);
      }
      if (!dialled) return unreachable(socket, destination, dialError ?? new Error('not dialled'), false);
      observer.forwarded('connect', 'not_intercepted');
      const suppressed = ctx.failureLogs.admit(`${route.name} not-intercepted`);
      if (suppressed !== undefined) {
        ctx.logger.warn(
          { route: route.name, destination: authority(destination, 'https'), suppressed },
          'HTTPS tunnel to a routed host passed through untouched: no token could be added (set intercept: true on the route to inject it)',
        );
      }
      dialled.join(first);
    });
  }
}

/** Why TLS with the app failed on an intercepted tunnel; `reason` is a stable log field. */
interface HandshakeFailure {
  readonly reason: 'no_common_alpn' | 'certificate_refused' | 'closed_during_handshake' | 'handshake_failed';
  readonly message: string;
}

/** RFC 8446 6.2 alerts a client sends when it does not accept the server's certificate. */
const CERTIFICATE_ALERT = /ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED)$/;

/**
 * Issue 10 item 22: a hint that matches the failure. OpenSSL's server-side codes name it: no
 * ALPN protocol in common (RFC 7301 3.2 no_application_protocol), or an alert from the app
 * about the certificate (RFC 8446 6.2). `code` undefined: the app hung up mid-handshake
 * without an alert, as Node.js clients do when they reject the certificate.
 */
export function describeHandshakeFailure(code: string | undefined): HandshakeFailure {
  if (code === 'ERR_SSL_NO_APPLICATION_PROTOCOL') {
    return {
      reason: 'no_common_alpn',
      message: 'TLS with the app failed on an intercepted tunnel: the app offered no ALPN protocol the sidecar speaks there (it speaks h2 and http/1.1)',
    };
  }
  if (code !== undefined && CERTIFICATE_ALERT.test(code)) {
    return {
      reason: 'certificate_refused',
      message: 'TLS with the app failed on an intercepted tunnel: the app refused the leaf certificate (does the app trust the interception CA?)',
    };
  }
  if (code === undefined || code === 'ECONNRESET' || code === 'EPIPE') {
    return {
      reason: 'closed_during_handshake',
      message: 'TLS with the app failed on an intercepted tunnel: the app closed the connection during the handshake (Node.js clients do so when they do not trust the interception CA)',
    };
  }
  return {
    reason: 'handshake_failed',
    message: 'TLS with the app failed on an intercepted tunnel: no common protocol version or cipher, or not a TLS client',
  };
}

/** The forward-proxy result for the sidecar refusing a destination. */
export function refusedResult(err: SidecarError): ForwardResult {
  if (err.code === 'ERR_FORWARD_LOOP') return 'loop';
  return err.status === 403 ? 'denied' : 'invalid';
}

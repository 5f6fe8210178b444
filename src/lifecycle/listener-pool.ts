/**
 * Every listener the sidecar opens, of every kind (proxy, route, endpoints, admin), started
 * one way: the kind's limits (issue 10 items 1-3), the connection metrics, and the dial
 * policy that learns each bound address so nothing is relayed back into the sidecar (item 10).
 *
 * A configuration reload (issue 13) builds a new generation of handlers. A listener whose
 * address (and kind) did not change keeps its socket: the generation being built *claims* it
 * and its handlers are swapped in at commit, so an app's keep-alive connection carries on and
 * no request is refused. A listener at a new address is bound while the generation is built
 * (a bind failure fails the reload, nothing changed); one no longer claimed is drained and
 * closed after the commit. Each request is counted against the generation that handled it,
 * so that generation's upstream pools close only once its last request has finished.
 */
import type { RequestListener } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config, ListenAddress } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { DialPolicy } from '../proxy/forward/dial-policy.js';
import type { InboundRequest, UpgradeListener } from '../proxy/inbound.js';
import { listenerLimits, type ConnectionObserver, type ListenerKind } from '../proxy/limits.js';
import { listenHttp, type ConnectListener, type ListeningServer } from '../proxy/listen.js';

/** Starts (or claims) one listener; a failure to bind is a config error naming `keyPath`. */
export type Listen = (
  kind: ListenerKind,
  address: ListenAddress,
  keyPath: string,
  onRequest: RequestListener,
  onUpgrade?: UpgradeListener,
  onConnect?: ConnectListener,
) => Promise<ListeningServer>;

/** What a generation's requests are counted on. */
export interface InFlight {
  enter(): void;
  /** A stable function (no per-request closure), called when the request's response closes. */
  readonly leave: () => void;
}

interface Handlers {
  request: RequestListener;
  upgrade: UpgradeListener | undefined;
  connect: ConnectListener | undefined;
  inFlight: InFlight;
}

interface PooledListener {
  readonly id: string;
  readonly kind: ListenerKind;
  readonly server: ListeningServer;
  /** The handlers requests go to now; replaced at commit. */
  handlers: Handlers;
}

/** The listeners of one generation being built: claimed or newly bound, not yet serving it. */
export interface ListenerClaims {
  readonly listen: Listen;
  /**
   * The generation's handlers take over its claimed listeners, at once; the unclaimed ones
   * stop accepting and drain for up to `drainMs` (the returned promise settles when closed).
   */
  commit(drainMs: number): Promise<void>;
  /** The build failed: close what it bound, leave the serving generation untouched. */
  abort(): Promise<void>;
}

export interface ListenerPool {
  claims(config: Config, inFlight: InFlight): ListenerClaims;
  /** Stops every listener but those of kind `keep`, letting requests in flight finish for up to `drainMs`. */
  drain(drainMs: number, keep: ListenerKind): Promise<void>;
  close(): Promise<void>;
}

export interface ListenerPoolParts {
  readonly observer: ConnectionObserver;
  readonly dialPolicy: DialPolicy;
}

export function createListenerPool(parts: ListenerPoolParts): ListenerPool {
  let serving = new Map<string, PooledListener>();
  /** Listeners a commit retired, still draining. */
  const closing = new Set<Promise<void>>();

  async function bind(config: Config, id: string, kind: ListenerKind, address: ListenAddress, keyPath: string, handlers: Handlers): Promise<PooledListener> {
    // The closures read `pooled.handlers` on every request, so a commit redirects the next
    // request of every open connection (HTTP/1.1 keep-alive and HTTP/2 streams alike).
    const pooled: { handlers: Handlers } = { handlers };
    const onRequest: RequestListener = (req, res) => {
      const h = pooled.handlers;
      h.inFlight.enter();
      res.once('close', h.inFlight.leave);
      h.request(req, res);
    };
    const detached = (pick: (h: Handlers) => UpgradeListener | ConnectListener | undefined) => (req: InboundRequest, socket: Duplex, head: Buffer) => {
      const h = pooled.handlers;
      const handler = pick(h);
      if (!handler) return void socket.destroy();
      h.inFlight.enter();
      socket.once('close', h.inFlight.leave);
      // A CONNECT's request is node:http's own IncomingMessage: both handler kinds accept it.
      (handler as UpgradeListener)(req, socket, head);
    };
    let server: ListeningServer;
    try {
      server = await listenHttp(address, onRequest, handlers.upgrade ? detached((h) => h.upgrade) : undefined, {
        kind,
        limits: listenerLimits(config.limits, kind),
        observer: parts.observer,
        admit: (req) => parts.dialPolicy.admit(req),
        onConnect: handlers.connect ? detached((h) => h.connect) : undefined,
      });
    } catch (err) {
      throw new ConfigError(keyPath, `cannot listen on ${address.host}:${address.port}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
    }
    parts.dialPolicy.addListener(server.address);
    return Object.assign(pooled, { id, kind, server });
  }

  async function closeListener(listener: PooledListener, drainMs: number): Promise<void> {
    await listener.server.close(drainMs);
    parts.dialPolicy.removeListener(listener.server.address);
  }

  return {
    claims(config, inFlight) {
      const claimed = new Map<string, { listener: PooledListener; handlers: Handlers }>();
      const bound: PooledListener[] = [];
      const listen: Listen = async (kind, address, keyPath, request, upgrade, connect) => {
        const id = listenerId(kind, address, keyPath, upgrade !== undefined, connect !== undefined);
        const handlers: Handlers = { request, upgrade, connect, inFlight };
        if (claimed.has(id)) throw new ConfigError(keyPath, `${address.host}:${address.port} is already used by another listener`);
        const existing = serving.get(id);
        if (existing) {
          claimed.set(id, { listener: existing, handlers });
          return existing.server;
        }
        const listener = await bind(config, id, kind, address, keyPath, handlers);
        bound.push(listener);
        claimed.set(id, { listener, handlers });
        return listener.server;
      };
      return {
        listen,
        async commit(drainMs) {
          const next = new Map<string, PooledListener>();
          for (const [id, { listener, handlers }] of claimed) {
            listener.handlers = handlers;
            next.set(id, listener);
          }
          const retired = [...serving.values()].filter((l) => !claimed.has(l.id));
          serving = next;
          const closed = Promise.all(retired.map((l) => closeListener(l, drainMs))).then(() => undefined);
          closing.add(closed);
          await closed;
          closing.delete(closed);
        },
        async abort() {
          await Promise.all(bound.map((l) => closeListener(l, 0)));
        },
      };
    },
    async drain(drainMs, keep) {
      await Promise.all([...serving.values()].filter((l) => l.kind !== keep).map((l) => l.server.close(drainMs)));
    },
    async close() {
      const all = [...serving.values()];
      serving = new Map();
      await Promise.all([...all.map((l) => l.server.close(0)), ...closing]);
    },
  };
}

/**
 * What makes a listener the same one across generations: its kind, which handlers it has
 * (a CONNECT-capable proxy listener is not a route's), and its configured address. Port 0
 * (tests) binds anew every time, so there the key path (and host) identifies it instead.
 */
function listenerId(kind: ListenerKind, address: ListenAddress, keyPath: string, upgrade: boolean, connect: boolean): string {
  const where = address.port === 0 ? `${keyPath}@${address.host}` : `${address.host}:${address.port}`;
  return `${kind}|${upgrade ? 'u' : ''}${connect ? 'c' : ''}|${where}`;
}

/** Counts one generation's requests; `idle` resolves once it is retired and none is left. */
export function createInFlight(): InFlight & { readonly count: number; whenIdle(): Promise<void> } {
  let count = 0;
  let waiters: Array<() => void> = [];
  const settle = () => {
    if (count > 0) return;
    const ready = waiters;
    waiters = [];
    for (const w of ready) w();
  };
  return {
    enter: () => void (count += 1),
    leave: () => {
      count -= 1;
      settle();
    },
    get count() {
      return count;
    },
    whenIdle: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        settle();
      }),
  };
}

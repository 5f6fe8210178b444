/**
 * Every listener the sidecar opens, of every kind (proxy, route, endpoints, admin), started
 * one way: the kind's limits (issue 10 items 1-3), the connection metrics, and the dial
 * policy that learns each bound address so nothing is relayed back into the sidecar (item 10).
 * Shutdown drains the traffic listeners first while admin still answers (not ready), then admin.
 */
import type { RequestListener } from 'node:http';
import type { UpgradeListener } from '../proxy/inbound.js';
import type { ConnectionObserver, ListenerKind } from '../proxy/limits.js';
import { listenerLimits } from '../proxy/limits.js';
import type { Config, ListenAddress } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { DialPolicy } from '../proxy/forward/dial-policy.js';
import { listenHttp, type ConnectListener, type ListeningServer } from '../proxy/listen.js';
import type { Deferrer } from './resources.js';

/** Starts one listener; a failure to bind is a config error naming `keyPath`. */
export type Listen = (
  kind: ListenerKind,
  address: ListenAddress,
  keyPath: string,
  onRequest: RequestListener,
  onUpgrade?: UpgradeListener,
  onConnect?: ConnectListener,
) => Promise<ListeningServer>;

export interface ListenerSet {
  readonly listen: Listen;
  /** Stops every listener but `keep`, letting requests in flight finish for up to `drainMs`. */
  drain(drainMs: number, keep: ListeningServer): Promise<void>;
}

export function createListenerSet(config: Config, parts: { observer: ConnectionObserver; dialPolicy: DialPolicy; resources: Deferrer }): ListenerSet {
  const servers: ListeningServer[] = [];
  const listen: Listen = async (kind, address, keyPath, onRequest, onUpgrade, onConnect) => {
    let server: ListeningServer;
    try {
      server = await listenHttp(address, onRequest, onUpgrade, {
        kind,
        limits: listenerLimits(config.limits, kind),
        observer: parts.observer,
        admit: (req) => parts.dialPolicy.admit(req),
        onConnect,
      });
    } catch (err) {
      throw new ConfigError(keyPath, `cannot listen on ${address.host}:${address.port}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
    }
    parts.dialPolicy.addListener(server.address);
    servers.push(server);
    parts.resources.defer(() => server.close(0));
    return server;
  };
  return {
    listen,
    async drain(drainMs, keep) {
      await Promise.all(servers.filter((s) => s !== keep).map((s) => s.close(drainMs)));
    },
  };
}

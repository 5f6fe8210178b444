/**
 * Shared by the long-running development commands (dev-sts, demo-upstream,
 * demo-token-issuer): command-line errors, a --listen flag, and waiting for
 * SIGTERM/SIGINT, which a container runtime sends to PID 1 on stop.
 */
import { parseListenAddress, type ListenAddress } from '../http/listen-address.js';

/** A problem with the command line; the message starts with the flag at fault. */
export class UsageError extends Error {}

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (loopback); `example` shows the form in the error. */
export function parseListenFlag(flag: string, value: string, example = '127.0.0.1:8090'): ListenAddress {
  const address = parseListenAddress(value);
  if (!address) throw new UsageError(`${flag}: expected HOST:PORT (e.g. ${example}), got '${value}'`);
  return address;
}

export function requireUrl(flag: string, value: string | undefined): string {
  if (value === undefined) throw new UsageError(`${flag} is required`);
  if (!URL.canParse(value)) throw new UsageError(`${flag}: '${value}' is not a URL`);
  return value;
}

/** Resolves on the first SIGTERM or SIGINT and removes its listeners. */
export function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop).off('SIGTERM', stop);
      resolve(signal);
    };
    process.on('SIGINT', stop).on('SIGTERM', stop);
  });
}

/**
 * Shared by the small long-running demo commands (demo-upstream, demo-token-issuer):
 * parsing a --listen flag and waiting for SIGTERM/SIGINT, which a container runtime
 * sends to PID 1 on stop.
 */

export class UsageError extends Error {}

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (loopback). */
export function parseListenFlag(flag: string, value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (match === null || !(port >= 0 && port <= 65535)) {
    throw new UsageError(`${flag}: expected HOST:PORT (e.g. 127.0.0.1:8090), got '${value}'`);
  }
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
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

/**
 * `HOST:PORT` as written in the config and on command lines: `127.0.0.1:8080`,
 * `[::1]:8080`, or `:8080` for loopback. Nothing that needs DNS at bind time is implied
 * here; the config adds its own rule on the host (an IP address or localhost).
 */

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

const LISTEN_ADDRESS = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/;

/** The address, or undefined when `value` is not of the form HOST:PORT with a port up to 65535. */
export function parseListenAddress(value: string): ListenAddress | undefined {
  const match = LISTEN_ADDRESS.exec(value);
  const port = Number(match?.[3]);
  if (match === null || !(port >= 0 && port <= 65535)) return undefined;
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
}

/** `http://127.0.0.1:8080`, `http://[::1]:8080`: an address a listener got, as a URL base. */
export function listenUrl(address: ListenAddress, scheme: 'http' | 'https' = 'http'): string {
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `${scheme}://${host}:${address.port}`;
}

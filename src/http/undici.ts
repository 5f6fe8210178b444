/**
 * The parts of undici the sidecar uses, loaded file by file (issue 15). `import 'undici'` runs
 * its index, which loads fetch, WebSocket, EventSource, the cache stores, the mock agents and
 * every interceptor: 111 files, about 8 MB of resident memory in a process that needs a Pool,
 * an Agent, the connector and `request()` (33 files). Same files, same classes: code that
 * imports 'undici' whole (the tests, the demo) shares them with this module.
 *
 * Types come from undici's own declarations; only the values are loaded here.
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const load = createRequire(import.meta.url);

export const Pool: typeof Undici.Pool = load('undici/lib/dispatcher/pool.js');
export const Agent: typeof Undici.Agent = load('undici/lib/dispatcher/agent.js');
export const buildConnector: typeof Undici.buildConnector = load('undici/lib/core/connect.js');
const apiRequest: (this: Undici.Dispatcher, options: Undici.Dispatcher.RequestOptions) => Promise<Undici.Dispatcher.ResponseData> = load(
  'undici/lib/api/api-request.js',
);

/** undici's `request(url, { dispatcher, ... })` for an absolute URL (what its index's wrapper does). */
export function request(
  url: string | URL,
  options: Omit<Undici.Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & { readonly dispatcher: Undici.Dispatcher; readonly method: Undici.Dispatcher.HttpMethod },
): Promise<Undici.Dispatcher.ResponseData> {
  const target = typeof url === 'string' ? new URL(url) : url;
  const { dispatcher, ...rest } = options;
  return apiRequest.call(dispatcher, { ...rest, origin: target.origin, path: `${target.pathname}${target.search}` });
}

/**
 * Starting a real sidecar for a test: config through the real schema, every listener
 * on 127.0.0.1 port 0, logs captured in memory so tests can assert on them.
 */
import { parseConfig } from '../../src/config/load.js';
import { startSidecar, type Sidecar } from '../../src/main.js';

export interface SidecarHarness {
  readonly sidecar: Sidecar;
  /** Every log line written so far (JSON text). */
  readonly logs: string[];
  close(): Promise<void>;
}

export async function startHarness(config: Record<string, unknown>, options: { waitForTokens?: boolean } = {}): Promise<SidecarHarness> {
  const logs: string[] = [];
  const full = parseConfig({
    proxy: { listen: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'debug' },
    ...config,
  });
  const sidecar = await startSidecar(full, {
    logDestination: { write: (line: string) => void logs.push(line) },
    waitForTokens: options.waitForTokens ?? true,
  });
  return { sidecar, logs, close: () => sidecar.close(0) };
}

/** Kept so existing imports keep working; the recorder lives in ./upstream.js. */
export { startUpstream, type RecordedRequest, type TestUpstream } from './upstream.js';

export const TOKEN_TYPE_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';

/** Kept for files not yet moved to ./eventually.js. */
export { sleep } from './eventually.js';

/** Parses the captured JSON log lines. */
export function parsedLogs(logs: readonly string[]): Array<Record<string, unknown>> {
  return logs.flatMap((l) => l.split('\n').filter(Boolean)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * Closes what a test started when the test ends, pass or fail:
 * `const own = closeAfter(t); const sts = own(await startFakeSts());`
 */
export function closeAfter(t: { after(fn: () => unknown): void }): <T extends { close(): unknown }>(resource: T) => T {
  return (resource) => {
    t.after(() => resource.close());
    return resource;
  };
}

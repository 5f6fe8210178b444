/**
 * Bench child: the real sts-sidecar with the fuzz topology's configuration (five routes, the
 * forward proxy, interception with an openssl-made CA), for the large fuzz run and the soak.
 * Its `stats` report this process's RSS and open descriptors, not counting its keep-alive
 * connections to the STS (those follow the STS's keep-alive, not the front's traffic).
 */
import { parseConfig } from '../../../src/config/load.js';
import { startSidecar } from '../../../src/main.js';
import { selfUsage } from '../../helpers/fuzz-usage.js';
import { applyRuntimeFlags } from '../../../src/cli/runtime-flags.js';
import { serveChild } from './child.js';

// As `sts-sidecar run` does (issue 15), unless the bench compares without them.
if (process.env['BENCH_SIDECAR_FLAGS'] !== '0') applyRuntimeFlags();

export interface FuzzSidecarOptions {
  readonly config: Record<string, unknown>;
  readonly stsPort: number;
}

serveChild<FuzzSidecarOptions>(async (options) => {
  const config = parseConfig({
    proxy: { listen: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    ...options.config,
    // Warnings per malformed request would flood the bench's output; errors still show.
    log: { level: 'error' },
  });
  const sidecar = await startSidecar(config, { waitForTokens: true });
  const info: Record<string, string | number> = { url: sidecar.proxyUrl, adminUrl: sidecar.adminUrl, pid: process.pid };
  for (const [name, url] of Object.entries(sidecar.routeUrls)) info[`route:${name}`] = Number(new URL(url).port);
  return {
    info,
    openFds: () => selfUsage([options.stsPort]).openFds,
    close: () => sidecar.close(0),
  };
});

/**
 * Bench child: the real sts-sidecar (config through the real schema), one route with a
 * dedicated listener in front of the bench upstream, token from the bench STS stub.
 */
import { parseConfig } from '../../../src/config/load.js';
import { startSidecar } from '../../../src/main.js';
import { applyRuntimeFlags } from '../../../src/cli/runtime-flags.js';
import { serveChild } from './child.js';

export interface SidecarOptions {
  /** e.g. http://127.0.0.1:PORT/token */
  readonly stsTokenUrl: string;
  readonly upstreamUrl: string;
  readonly logLevel?: string;
  /** Extra route settings (e.g. `ca` for an https upstream). */
  readonly route?: Record<string, unknown>;
  /** Workload identity files (mTLS to the upstream). */
  readonly identity?: { readonly cert: string; readonly key: string; readonly ca?: string };
}

const ROUTE_NAME = 'bench';

// As `sts-sidecar run` does (issue 15), unless the bench compares without them.
if (process.env['BENCH_SIDECAR_FLAGS'] !== '0') applyRuntimeFlags();

serveChild<SidecarOptions>(async (options) => {
  const config = parseConfig({
    proxy: { listen: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    log: { level: options.logLevel ?? 'warn' },
    subjectToken: { value: 'iamtheeggman', type: 'urn:ietf:params:oauth:token-type:access_token' },
    sts: { url: options.stsTokenUrl },
    ...(options.identity ? { identity: options.identity } : {}),
    routes: [{ name: ROUTE_NAME, listen: '127.0.0.1:0', upstream: options.upstreamUrl, audience: 'bench', ...options.route }],
  });
  const sidecar = await startSidecar(config, { waitForTokens: true });
  const url = sidecar.routeUrls[ROUTE_NAME];
  const status = sidecar.tokens.status().find((s) => s.route === ROUTE_NAME);
  if (!url || !status?.valid) {
    await sidecar.close(0);
    throw new Error(`sidecar started without ${url ? 'a valid token' : 'a listener'} for route "${ROUTE_NAME}" (${JSON.stringify(status)})`);
  }
  return {
    info: { url, adminUrl: sidecar.adminUrl, pid: process.pid },
    close: () => sidecar.close(0),
  };
});

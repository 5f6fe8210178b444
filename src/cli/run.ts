import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import { SidecarError } from '../errors.js';
import { startSidecar } from '../main.js';

const USAGE = `Usage: sts-sidecar [run] --config FILE

Runs the sidecar: the proxy listener, each route's dedicated listener and the admin
listener (/metrics, /healthz, /readyz), as configured. SIGTERM or SIGINT drains
in-flight requests (shutdown.drainSeconds) and exits.

Options:
  -c, --config FILE   config file (YAML or JSON); default: $STS_SIDECAR_CONFIG
  -h, --help          this help
`;

export async function runCommand(argv: string[]): Promise<number> {
  let values: { config?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`sts-sidecar run: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const path = values.config ?? process.env['STS_SIDECAR_CONFIG'];
  if (!path) {
    process.stderr.write(`sts-sidecar run: no config: pass --config FILE or set STS_SIDECAR_CONFIG\n\n${USAGE}`);
    return 2;
  }
  let sidecar;
  try {
    sidecar = await startSidecar(await loadConfigFile(path));
  } catch (err) {
    if (err instanceof SidecarError) {
      process.stderr.write(`sts-sidecar: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      sidecar.logger.info({ signal }, 'shutting down: draining in-flight requests');
      process.off('SIGTERM', stop).off('SIGINT', stop);
      // A second signal during the drain ends it at once.
      process.once('SIGTERM', () => process.exit(1)).once('SIGINT', () => process.exit(1));
      sidecar.close().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', stop).on('SIGINT', stop);
  });
}

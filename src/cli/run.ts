import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import { LOG_LEVELS, type Config, type LogLevel } from '../config/schema.js';
import { SidecarError } from '../errors.js';
import { startSidecar, type Sidecar } from '../main.js';

const USAGE = `Usage: sts-sidecar [run] --config FILE

Runs the sidecar: the proxy listener, each route's dedicated listener and the admin
listener (/metrics, /healthz, /readyz), as configured. SIGTERM or SIGINT fails
readiness, drains in-flight requests (shutdown.drainSeconds, shutdown.idleSeconds)
and exits. SIGHUP, or a change of the config file (a mounted ConfigMap's update
included), reloads the configuration: a config with problems is refused and the
running one keeps serving.

Options:
  -c, --config FILE   config file (YAML or JSON); default: $STS_SIDECAR_CONFIG
  --log-level LEVEL   overrides log.level: ${LOG_LEVELS.join(' | ')}
  -h, --help          this help
`;

export async function runCommand(argv: string[]): Promise<number> {
  let values: { config?: string | undefined; 'log-level'?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
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
  const logLevel = values['log-level'];
  if (logLevel !== undefined && !isLogLevel(logLevel)) {
    process.stderr.write(`sts-sidecar run: --log-level "${logLevel}" is not a level; use one of ${LOG_LEVELS.join(', ')}\n`);
    return 2;
  }
  const path = values.config ?? process.env['STS_SIDECAR_CONFIG'];
  if (!path) {
    process.stderr.write(`sts-sidecar run: no config: pass --config FILE or set STS_SIDECAR_CONFIG\n\n${USAGE}`);
    return 2;
  }
  // Issue 10 item 16: node's default for SIGHUP is to exit (129) with no drain. Issue 13: it
  // reloads the configuration. Installed before start-up, so a SIGHUP while listeners open is
  // not fatal either (it is then only logged: the file is read once start-up is done).
  let sidecar: Sidecar | undefined;
  const hangUp = (signal: NodeJS.Signals) => {
    if (sidecar) {
      sidecar.logger.info({ signal }, 'reloading the configuration');
      void sidecar.reload();
    } else process.stderr.write(`sts-sidecar: ${signal} during start-up: ignored\n`);
  };
  process.on('SIGHUP', hangUp);
  try {
    // --log-level also outlives reloads: it overrides each reloaded config's log.level.
    sidecar = await startSidecar(withLogLevel(await loadConfigFile(path), logLevel), { configFile: path, watchConfig: true, logLevel });
  } catch (err) {
    process.off('SIGHUP', hangUp);
    if (err instanceof SidecarError) {
      process.stderr.write(`sts-sidecar: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const running = sidecar;
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      running.logger.info({ signal }, 'shutting down: draining in-flight requests');
      process.off('SIGTERM', stop).off('SIGINT', stop);
      // A second signal during the drain ends it at once.
      process.once('SIGTERM', () => process.exit(1)).once('SIGINT', () => process.exit(1));
      running.close().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', stop).on('SIGINT', stop);
  });
}

function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** The command line's --log-level wins over the file's log.level. */
function withLogLevel(config: Config, level: LogLevel | undefined): Config {
  return level === undefined ? config : Object.freeze({ ...config, log: Object.freeze({ ...config.log, level }) });
}

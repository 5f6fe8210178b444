import { loadConfigFile } from '../config/load.js';
import { SidecarError } from '../errors.js';

const USAGE = `Usage: sts-sidecar check-config FILE

Validates FILE against the configuration schema and exits 0 when it is valid, or 2
with every problem found, each naming its key path (e.g. routes[0].upstream).
Files the config names (tokens, CAs) are not opened: they may live only in the pod.
`;

export async function checkConfigCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [path, ...extra] = argv;
  if (!path || extra.length > 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  try {
    const config = await loadConfigFile(path);
    process.stdout.write(`${path}: valid (${config.routes.length} route${config.routes.length === 1 ? '' : 's'}: ${config.routes.map((r) => r.name).join(', ')})\n`);
    return 0;
  } catch (err) {
    if (err instanceof SidecarError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

import { parseArgs } from 'node:util';
import { inspectConfigFiles } from '../config/check-files.js';
import type { ConfigProblem } from '../config/issue-messages.js';
import { loadConfigFile } from '../config/load.js';
import { SidecarError } from '../errors.js';

const USAGE = `Usage: sts-sidecar check-config FILE
       sts-sidecar check-config --files FILE

Validates FILE against the configuration schema and exits 0 when it is valid, or 2
with every problem found, each naming its key path (e.g. routes[0].upstream).

Options:
  --files      also open what the config names, as the sidecar would: PEM certificates
               and keys parse, each key matches its certificate, token and secret files
               are readable, a JWT subject token decodes and has not expired,
               environment sources are set. Every problem is reported in one run.
               Without it nothing is opened: the files may exist only in the pod.
  -h, --help   this help

Nothing printed ever contains a token, key or secret.
`;

function formatProblem(p: ConfigProblem): string {
  return p.path ? `${p.path}: ${p.problem}` : p.problem;
}

export async function checkConfigCommand(argv: string[]): Promise<number> {
  let values: { files?: boolean | undefined; help?: boolean | undefined };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: { files: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    process.stderr.write(`sts-sidecar check-config: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [path, ...extra] = positionals;
  if (!path || extra.length > 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  let config;
  try {
    config = await loadConfigFile(path);
  } catch (err) {
    if (err instanceof SidecarError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const routes = `${config.routes.length} route${config.routes.length === 1 ? '' : 's'}: ${config.routes.map((r) => r.name).join(', ')}`;
  if (!values.files) {
    process.stdout.write(`${path}: valid (${routes})\n`);
    return 0;
  }
  const { problems, notes } = await inspectConfigFiles(config);
  for (const note of notes) process.stdout.write(`note: ${formatProblem(note)}\n`);
  if (problems.length > 0) {
    const count = problems.length === 1 ? 'a problem' : `${problems.length} problems`;
    process.stderr.write(`${path}: the schema is satisfied, but ${count} in the files it names:\n${problems.map((p) => `  - ${formatProblem(p)}\n`).join('')}`);
    return 2;
  }
  process.stdout.write(`${path}: valid, and the files it names are usable (${routes})\n`);
  return 0;
}

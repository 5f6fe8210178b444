/**
 * The edge where configuration enters: unknown input -> validated, deep-frozen Config.
 * Everything past this point trusts the types.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { ConfigError } from '../errors.js';
import { substituteEnvironment, type Environment } from './env-substitution.js';
import { formatKeyPath, problemsFromIssues, type ConfigProblem } from './issue-messages.js';
import { configSchema, type Config } from './schema.js';

export type { ConfigProblem };
export { formatKeyPath };

/** Raised with every problem found, so one run of check-config shows them all. */
export class ConfigValidationError extends ConfigError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    const first = problems[0] ?? { path: '', problem: 'invalid configuration' };
    super(first.path, first.problem);
    this.problems = problems;
    this.message =
      problems.length === 1
        ? `invalid configuration: ${formatProblem(first)}`
        : `invalid configuration (${problems.length} problems):\n${problems.map((p) => `  - ${formatProblem(p)}`).join('\n')}`;
  }
}

/**
 * Text that is not YAML (or JSON): `config.yaml:3:7: <what>`, as compilers write it. Only
 * the parser's first line is kept: the lines after it quote the file, which may hold a secret.
 */
export class ConfigSyntaxError extends ConfigValidationError {
  constructor(source: string, err: unknown) {
    const pos = err instanceof YAMLParseError ? err.linePos?.[0] : undefined;
    const where = pos ? `${source}:${pos.line}:${pos.col}` : source;
    const first = ((err as Error).message ?? String(err)).split('\n')[0]!;
    // yaml's pretty errors end the line with " at line L, column C:", which `where` says already.
    const what = first.replace(/\s*at line \d+, column \d+:?\s*$/, '').replace(/:\s*$/, '');
    // The parser's error is not kept as `cause`: its pretty message quotes the file's lines.
    super([{ path: '', problem: `${where}: not valid YAML or JSON: ${lowerFirst(what)}` }]);
    this.message = this.problems[0]!.problem;
  }
}

function lowerFirst(text: string): string {
  return /^[A-Z][a-z]/.test(text) ? text[0]!.toLowerCase() + text.slice(1) : text;
}

function formatProblem(p: ConfigProblem): string {
  return p.path ? `${p.path}: ${p.problem}` : p.problem;
}

export function parseConfig(input: unknown): Config {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigValidationError([{ path: '', problem: 'the configuration must be a mapping (YAML) or object (JSON)' }]);
  }
  // reportInput: the messages name the kind of value found (never the value itself).
  const result = configSchema.safeParse(input, { reportInput: true });
  if (!result.success) throw new ConfigValidationError(problemsFromIssues(result.error.issues, configSchema));
  return deepFreeze(result.data);
}

/**
 * A config file's text: YAML or JSON, then `${VAR}` substitution in its string values
 * (env-substitution.ts), then the schema. `env` defaults to the process's environment.
 */
export function parseConfigText(text: string, source = 'config', env: Environment = process.env): Config {
  let input: unknown;
  try {
    // YAML 1.2 is a superset of JSON, so one parser serves both formats.
    input = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    throw new ConfigSyntaxError(source, err);
  }
  const { value, problems } = substituteEnvironment(input, env);
  if (problems.length > 0) throw new ConfigValidationError(problems);
  return parseConfig(value);
}

export async function loadConfigFile(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError('', `cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      cause: err,
      code: 'ERR_CONFIG_UNREADABLE',
    });
  }
  return parseConfigText(text, path);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    // URL objects keep internal state in private fields; freezing them is harmless.
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

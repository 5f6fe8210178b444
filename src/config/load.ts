/**
 * The edge where configuration enters: unknown input -> validated, deep-frozen Config.
 * Everything past this point trusts the types.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { substituteEnvironment, type Environment } from './env-substitution.js';
import { configSchema, type Config } from './schema.js';

export interface ConfigProblem {
  readonly path: string;
  readonly problem: string;
}

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

function formatProblem(p: ConfigProblem): string {
  return p.path ? `${p.path}: ${p.problem}` : p.problem;
}

/** `routes[0].upstream` from zod's ['routes', 0, 'upstream']. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

function toProblems(error: z.ZodError): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        problems.push({ path: formatKeyPath([...issue.path, key]), problem: 'unknown key' });
      }
      continue;
    }
    let problem = issue.message;
    if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) problem = 'is required';
    problems.push({ path: formatKeyPath(issue.path), problem });
  }
  return problems;
}

export function parseConfig(input: unknown): Config {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigValidationError([{ path: '', problem: 'the configuration must be a mapping (YAML) or object (JSON)' }]);
  }
  const result = configSchema.safeParse(input);
  if (!result.success) throw new ConfigValidationError(toProblems(result.error));
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
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    throw new ConfigError('', `${source}: not valid YAML or JSON${where}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
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

/**
 * `${VAR}` and `${VAR:-default}` in a config file (issue 13), applied to the parsed YAML's string
 * values, never to its text: a variable's value can hold `: ` or `#` and still cannot change the
 * document's structure. `$$` is a literal `$`; any other `$` is kept as written. An unset
 * variable without a default is a problem at the key path that uses it; its value never appears
 * in a message (it may be a secret).
 */

export type Environment = Readonly<Record<string, string | undefined>>;

/** A problem at a dotted key path (the shape load.ts reports). */
export interface SubstitutionProblem {
  readonly path: string;
  readonly problem: string;
}

const REFERENCE = /\$\$|\$\{([^}]*)\}|\$\{/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Returns `input` with every string value substituted, and the problems found (all of them). */
export function substituteEnvironment(input: unknown, env: Environment): { value: unknown; problems: SubstitutionProblem[] } {
  const problems: SubstitutionProblem[] = [];
  const walk = (node: unknown, path: string): unknown => {
    if (typeof node === 'string') return substitute(node, env, (problem) => problems.push({ path, problem }));
    if (Array.isArray(node)) return node.map((item, i) => walk(item, `${path}[${i}]`));
    if (node !== null && typeof node === 'object') {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(node)) out[key] = walk(item, path ? `${path}.${key}` : key);
      return out;
    }
    return node;
  };
  return { value: walk(input, ''), problems };
}

function substitute(text: string, env: Environment, problem: (message: string) => void): string {
  if (!text.includes('$')) return text;
  return text.replace(REFERENCE, (match: string, body: string | undefined) => {
    if (match === '$$') return '$';
    if (body === undefined) {
      problem('"${" without a closing "}" (write $$ for a literal $)');
      return match;
    }
    const dash = body.indexOf(':-');
    const name = dash === -1 ? body : body.slice(0, dash);
    if (!NAME.test(name)) {
      problem(`"\${${body.slice(0, 40)}}" is not a variable reference: use \${NAME} or \${NAME:-default} (write $$ for a literal $)`);
      return match;
    }
    const value = env[name];
    if (dash !== -1) return value === undefined || value === '' ? body.slice(dash + 2) : value;
    if (value === undefined) {
      problem(`environment variable ${name} is not set (give a default with \${${name}:-default})`);
      return match;
    }
    return value;
  });
}

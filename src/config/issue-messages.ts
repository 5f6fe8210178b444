/**
 * zod's issues, in the words of this config (issue 13): "did you mean" for an unknown key,
 * the expected type read from the schema at the issue's path (`expected a string or a list of
 * strings, got a number`, not `Invalid input`), the allowed values of an enum, bounds in
 * plain words. A message the schema wrote itself is kept as written. No value the user wrote
 * appears, only its kind: it may be a secret.
 */
import type { z } from 'zod';
import { closestKey } from './did-you-mean.js';
import { describeExpectedAt, describeValue, knownKeysAt, quoteList } from './schema-walk.js';

export interface ConfigProblem {
  readonly path: string;
  readonly problem: string;
}

type Issue = z.core.$ZodIssue & { readonly input?: unknown };

/** `routes[0].upstream` from zod's ['routes', 0, 'upstream']. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/** zod's own wording, which we replace; anything else came from the schema and is kept. */
const ZOD_DEFAULT = /^(Too small|Too big|Invalid input|Invalid option|Invalid discriminator|Invalid string|Invalid key|Invalid element)/;

/** Every problem of a failed parse against `schema` (parsed with `reportInput: true`). */
export function problemsFromIssues(issues: readonly Issue[], schema: z.ZodType, prefix: readonly PropertyKey[] = []): ConfigProblem[] {
  return issues.flatMap((issue) => problemsOf(issue, schema, [...prefix, ...issue.path]));
}

function problemsOf(issue: Issue, schema: z.ZodType, path: PropertyKey[]): ConfigProblem[] {
  const at = (problem: string): ConfigProblem[] => [{ path: formatKeyPath(path), problem }];
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeysAt(schema, path);
      const present = issue.input !== null && typeof issue.input === 'object' ? Object.keys(issue.input) : [];
      return issue.keys.map((key) => {
        const suggestion = closestKey(key, known.filter((k) => !present.includes(k)));
        return { path: formatKeyPath([...path, key]), problem: suggestion ? `unknown key (did you mean "${suggestion}"?)` : 'unknown key' };
      });
    }
    case 'invalid_key':
    case 'invalid_element':
      return problemsFromIssues(issue.issues as Issue[], schema, path);
    case 'invalid_union':
      return unionProblems(issue, schema, path);
    default:
      if (!ZOD_DEFAULT.test(issue.message)) return at(issue.message);
      return at(plainWords(issue, schema, path));
  }
}

function unionProblems(issue: Extract<Issue, { code: 'invalid_union' }>, schema: z.ZodType, path: PropertyKey[]): ConfigProblem[] {
  const at = (problem: string): ConfigProblem[] => [{ path: formatKeyPath(path), problem }];
  if (!ZOD_DEFAULT.test(issue.message)) return at(issue.message);
  const input = issue.input;
  // A discriminated union whose discriminator matched no variant: the path ends at that key.
  if ('options' in issue && Array.isArray(issue.options) && typeof issue.discriminator === 'string') {
    const value = input !== null && typeof input === 'object' ? (input as Record<string, unknown>)[issue.discriminator] : undefined;
    const allowed = quoteList(issue.options.map(String));
    return at(value === undefined ? `is required: one of ${allowed}` : `must be one of ${allowed}`);
  }
  // A variant whose type matched but whose content did not: its problems are the useful ones
  // (`scope: [5]` is a list with a bad item, not "neither a string nor a list").
  const matched = issue.errors.find((branch) => branch.length > 0 && !branch.every((i) => i.code === 'invalid_type' && i.path.length === 0));
  if (matched) return problemsFromIssues(matched as Issue[], schema, path);
  return at(expectedGot(schema, path, input));
}

function expectedGot(schema: z.ZodType, path: PropertyKey[], input: unknown, fallback?: string): string {
  const expected = describeExpectedAt(schema, path) ?? fallback;
  if (input === undefined) return expected ? `is required (${expected})` : 'is required';
  return `expected ${expected ?? 'another kind of value'}, got ${describeValue(input)}`;
}

function plainWords(issue: Issue, schema: z.ZodType, path: PropertyKey[]): string {
  switch (issue.code) {
    case 'invalid_type':
      return expectedGot(schema, path, issue.input, issue.expected === 'int' ? 'an integer' : `a value of type ${issue.expected}`);
    case 'invalid_value':
      return issue.values.length === 1 ? `must be ${quoteList(issue.values.map(String))}` : `must be one of ${quoteList(issue.values.map(String))}`;
    case 'too_small':
      return bound('at least', 'more than', issue.origin, Number(issue.minimum), issue.inclusive !== false, 'min');
    case 'too_big':
      return bound('at most', 'less than', issue.origin, Number(issue.maximum), issue.inclusive !== false, 'max');
    case 'invalid_format':
      return issue.message.replace(/^Invalid string: /, '');
    default:
      return issue.message;
  }
}

function bound(inclusiveWord: string, exclusiveWord: string, origin: string, limit: number, inclusive: boolean, side: 'min' | 'max'): string {
  const word = inclusive ? inclusiveWord : exclusiveWord;
  if (origin === 'string') {
    if (side === 'min' && limit === 1) return 'must not be empty';
    return `must be ${word} ${limit} characters long`;
  }
  if (origin === 'array' || origin === 'set') {
    if (side === 'min' && limit === 1) return 'must not be empty: give at least one item';
    return `must have ${word} ${limit} item${limit === 1 ? '' : 's'}`;
  }
  return `must be ${word} ${limit}`;
}

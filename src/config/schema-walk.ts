/**
 * Reading the zod schema itself, so error messages name what the schema accepts without a
 * hand-kept list (issue 13): the schemas at a key path, the keys an object there allows,
 * and a phrase for the value it expects ("a string or a list of strings").
 */
import type { z } from 'zod';

interface Def {
  readonly type: string;
  readonly [key: string]: unknown;
}

const defOf = (schema: unknown): Def | undefined => (schema as { _zod?: { def?: Def } } | undefined)?._zod?.def;

/** Wrappers whose inner schema is what the user writes. A pipe (transform) is read on its input side. */
function unwrap(schema: z.ZodType): z.ZodType[] {
  const def = defOf(schema);
  if (!def) return [];
  switch (def.type) {
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
    case 'readonly':
    case 'catch':
    case 'nonoptional':
      return unwrap(def['innerType'] as z.ZodType);
    case 'pipe':
      return unwrap(def['in'] as z.ZodType);
    case 'lazy':
      return unwrap((def['getter'] as () => z.ZodType)());
    case 'union': // discriminated unions are unions with a discriminator in zod 4
      return (def['options'] as z.ZodType[]).flatMap(unwrap);
    default:
      return [schema];
  }
}

/** Every schema the value at `path` may be checked against (several under a union). */
export function schemasAt(root: z.ZodType, path: readonly PropertyKey[]): z.ZodType[] {
  let current = unwrap(root);
  for (const part of path) {
    const next: z.ZodType[] = [];
    for (const schema of current) {
      const def = defOf(schema)!;
      if (def.type === 'object' && typeof part === 'string') {
        const child = (def['shape'] as Record<string, z.ZodType>)[part];
        if (child) next.push(...unwrap(child));
      } else if (def.type === 'array' && typeof part === 'number') {
        next.push(...unwrap(def['element'] as z.ZodType));
      } else if (def.type === 'record' && typeof part === 'string') {
        next.push(...unwrap(def['valueType'] as z.ZodType));
      }
    }
    current = next;
  }
  return current;
}

/** The keys the objects at `path` allow (all variants of a union together). */
export function knownKeysAt(root: z.ZodType, path: readonly PropertyKey[]): string[] {
  const keys = new Set<string>();
  for (const schema of schemasAt(root, path)) {
    const def = defOf(schema)!;
    if (def.type === 'object') for (const key of Object.keys(def['shape'] as object)) keys.add(key);
  }
  return [...keys];
}

/** "a string", "a list of strings", "one of "form" or "json"", ... for one schema. */
export function describeSchema(schema: z.ZodType): string {
  const phrases = unwrap(schema).map(describeOne);
  return joinAlternatives([...new Set(phrases)]);
}

/** The phrase for what the schemas at `path` accept, or undefined when the schema has nothing there. */
export function describeExpectedAt(root: z.ZodType, path: readonly PropertyKey[]): string | undefined {
  const schemas = schemasAt(root, path);
  if (schemas.length === 0) return undefined;
  return joinAlternatives([...new Set(schemas.map(describeOne))]);
}

function describeOne(schema: z.ZodType): string {
  const def = defOf(schema)!;
  switch (def.type) {
    case 'string':
      return 'a string';
    case 'number': {
      const checks = (def['checks'] as Array<{ _zod: { def: { check?: string; format?: string } } }> | undefined) ?? [];
      const integer = checks.some((c) => c._zod.def.check === 'number_format' && /int/.test(c._zod.def.format ?? ''));
      return integer ? 'an integer' : 'a number';
    }
    case 'boolean':
      return 'true or false';
    case 'array':
      return `a list of ${plural(describeSchema(def['element'] as z.ZodType))}`;
    case 'object':
      return 'a mapping';
    case 'record':
      return 'a mapping';
    case 'enum':
      return `one of ${quoteList(Object.values(def['entries'] as Record<string, string>))}`;
    case 'literal':
      return quoteList((def['values'] as unknown[]).map(String));
    default:
      return def.type;
  }
}

/** "a string" -> "strings"; anything else is left as "values". */
function plural(phrase: string): string {
  const simple: Record<string, string> = { 'a string': 'strings', 'a number': 'numbers', 'an integer': 'integers', 'a mapping': 'mappings', 'true or false': 'true/false values' };
  return simple[phrase] ?? 'values';
}

/** `"a", "b" or "c"`. */
export function quoteList(values: readonly string[]): string {
  return joinAlternatives(values.map((v) => JSON.stringify(v)));
}

export function joinAlternatives(items: readonly string[]): string {
  if (items.length <= 1) return items[0] ?? '';
  return `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

/** How a value the user wrote is named in a message: its kind, never its content (it may be a secret). */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value (null)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number') return Number.isInteger(value) ? 'a number' : 'a number with a fraction';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'object') return 'a mapping';
  return typeof value;
}

/**
 * The documentation kept true by the code (issue 11 item 9):
 * - every ```yaml block of README.md and docs/*.md that is a whole sidecar config (it has
 *   `sts:` and `routes:`) passes the validation behind `sts-sidecar check-config`; a block
 *   that is deliberately a fragment says so with the comment `# docs: fragment`;
 * - every key of the config schema is in docs/configuration.md's tables, every key there exists,
 *   and each plain default written there is the schema's;
 * - the error-code table of docs/design.md is the one generated from src/errors.ts.
 */
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { parseConfigText } from '../src/config/load.js';
import { configSchema } from '../src/config/schema.js';
import { DESIGN_DOC, errorCodeTable, tableIn } from './helpers/error-table.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FRAGMENT_MARKER = '# docs: fragment';

function documents(): Array<{ name: string; text: string }> {
  const docs = readdirSync(join(REPO, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs].map((name) => ({ name, text: readFileSync(join(REPO, name), 'utf8') }));
}

/** The ```yaml blocks of a Markdown text, with the line each starts on. */
function yamlBlocks(text: string): Array<{ line: number; body: string }> {
  const blocks: Array<{ line: number; body: string }> = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*```ya?ml\s*$/.test(lines[i]!)) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end]!)) end++;
    blocks.push({ line: start + 1, body: lines.slice(start, end).join('\n') });
    i = end;
  }
  return blocks;
}

interface SchemaKeys {
  /** Keys that hold a value: what a user writes a setting into. */
  readonly leaves: Map<string, { default?: unknown }>;
  /** Sections (objects, lists of objects): may be named in the docs, need not be. */
  readonly sections: Set<string>;
}

/** Every key path of a zod 4 schema, as the docs spell it (`routes[].authorization.header`). */
function schemaKeys(schema: z.ZodType): SchemaKeys {
  const keys: SchemaKeys = { leaves: new Map(), sections: new Set() };
  const walk = (s: z.ZodType, path: string, dflt: { default?: unknown }): void => {
    const def = (s as unknown as { _zod: { def: Record<string, unknown> & { type: string } } })._zod.def;
    switch (def.type) {
      case 'default':
        return walk(def['innerType'] as z.ZodType, path, { default: def['defaultValue'] });
      case 'optional':
      case 'prefault':
      case 'nullable':
      case 'readonly':
        return walk(def['innerType'] as z.ZodType, path, dflt);
      case 'pipe': // a transform: the user writes the input side
        return walk(def['in'] as z.ZodType, path, dflt);
      case 'object':
        if (path) keys.sections.add(path);
        for (const [key, value] of Object.entries(def['shape'] as Record<string, z.ZodType>)) walk(value, path ? `${path}.${key}` : key, {});
        return;
      case 'union': // clientAuth's methods: the keys of every variant
        for (const option of def['options'] as z.ZodType[]) walk(option, path, dflt);
        return;
      case 'array': {
        const element = def['element'] as z.ZodType;
        const inner = (element as unknown as { _zod: { def: { type: string } } })._zod.def.type;
        if (inner === 'object' || inner === 'pipe') {
          keys.sections.add(path);
          return walk(element, `${path}[]`, {});
        }
        keys.leaves.set(path, dflt);
        return;
      }
      default:
        if (!keys.leaves.has(path) || 'default' in dflt) keys.leaves.set(path, dflt);
    }
  };
  walk(schema, '', {});
  return keys;
}

/** The keys docs/configuration.md documents: backticked paths in the first cell of a `| key |` table. */
function documentedKeys(markdown: string): Map<string, string> {
  const rows = new Map<string, string>();
  let inKeyTable = false;
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('|')) {
      inKeyTable = false;
      continue;
    }
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
    if (cells[0] === 'key') {
      inKeyTable = true;
      continue;
    }
    if (!inKeyTable || /^-+$/.test(cells[0] ?? '')) continue;
    for (const [, key] of (cells[0] ?? '').matchAll(/`([^`]+)`/g)) rows.set(key!, cells[1] ?? '');
  }
  return rows;
}

function readIfFile(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EISDIR' ? '' : undefined;
  }
}

/** The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to hyphens. */
function headingSlugs(markdown: string): Set<string> {
  const slugs = new Set<string>();
  for (const [, heading] of markdown.matchAll(/^#{1,6} +(.+)$/gm)) {
    slugs.add(heading!.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-'));
  }
  return slugs;
}

describe('docs (issue 11 item 9)', () => {
  const docs = documents();

  it('every whole config in a ```yaml block passes check-config; every other block is a marked fragment', () => {
    let checked = 0;
    for (const { name, text } of docs) {
      for (const block of yamlBlocks(text)) {
        const where = `${name}:${block.line}`;
        if (block.body.includes(FRAGMENT_MARKER)) continue;
        const value: unknown = parseYaml(block.body);
        const isWhole = typeof value === 'object' && value !== null && 'sts' in value && 'routes' in value;
        assert.ok(isWhole, `${where}: a yaml block without sts: and routes: must say "${FRAGMENT_MARKER}"`);
        assert.doesNotThrow(() => parseConfigText(block.body, where), (err: Error) => `${where}: ${err.message}`);
        checked++;
      }
    }
    assert.ok(checked >= 4, `only ${checked} whole configs found in the docs`);
  });

  it('docs/configuration.md documents every key of the schema, and only those', () => {
    const schema = schemaKeys(configSchema as unknown as z.ZodType);
    const documented = documentedKeys(readFileSync(join(REPO, 'docs/configuration.md'), 'utf8'));
    const missing = [...schema.leaves.keys()].filter((k) => !documented.has(k));
    const unknown = [...documented.keys()].filter((k) => !schema.leaves.has(k) && !schema.sections.has(k));
    assert.deepEqual(missing, [], 'schema keys missing from docs/configuration.md');
    assert.deepEqual(unknown, [], 'keys in docs/configuration.md that the schema does not have');
  });

  it('each plain default in docs/configuration.md is the schema default', () => {
    const schema = schemaKeys(configSchema as unknown as z.ZodType);
    const documented = documentedKeys(readFileSync(join(REPO, 'docs/configuration.md'), 'utf8'));
    const wrong: string[] = [];
    for (const [key, { default: value }] of schema.leaves) {
      if (!['string', 'number', 'boolean'].includes(typeof value)) continue;
      const cell = documented.get(key) ?? '';
      const spelled = typeof value === 'string' && value === '' ? '""' : String(value);
      if (!cell.includes(`\`${spelled}\``)) wrong.push(`${key}: schema default ${spelled}, docs say "${cell}"`);
    }
    assert.deepEqual(wrong, []);
  });

  it('the error-code table in docs/design.md is generated from src/errors.ts', () => {
    const current = tableIn(readFileSync(DESIGN_DOC, 'utf8'));
    assert.ok(current !== undefined, 'docs/design.md has no generated error-code table');
    assert.equal(current, errorCodeTable(), 'out of date: run `node dist/test/helpers/error-table.js --write` after building');
  });

  it('links between the documents point at files and headings that exist', () => {
    const byName = new Map(docs.map((d) => [d.name, d.text]));
    const broken: string[] = [];
    for (const { name, text } of docs) {
      for (const [, target, anchor] of text.matchAll(/\]\((?!https?:|mailto:)([^)#\s]*)(?:#([^)\s]*))?\)/g)) {
        const file = target ? join(name.startsWith('docs/') ? 'docs' : '', target!).split('\\').join('/') : name;
        const linked = byName.get(file) ?? readIfFile(join(REPO, file));
        if (linked === undefined) broken.push(`${name}: ${target}`);
        else if (anchor && file.endsWith('.md') && !headingSlugs(linked).has(anchor)) broken.push(`${name}: ${target}#${anchor}`);
      }
    }
    assert.deepEqual(broken, []);
  });
});

/**
 * The error-code table of docs/design.md, generated from src/errors.ts (issue 11 item 9), so
 * the documented codes cannot drift from the code. The codes, the class raising each and the
 * descriptions come from the source (the `ErrorCode` union, the constructors, the doc
 * comments); each HTTP status comes from constructing that error.
 *
 * test/docs.test.ts fails when the table in docs/design.md differs. To rewrite it:
 *   npx tsc -p tsconfig.json && node dist/test/helpers/error-table.js --write
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import * as errors from '../../src/errors.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const DESIGN_DOC = `${REPO}docs/design.md`;
export const TABLE_BEGIN = '<!-- error-codes:begin (generated from src/errors.ts by test/helpers/error-table.ts; do not edit) -->';
export const TABLE_END = '<!-- error-codes:end -->';

export interface ErrorCodeRow {
  readonly code: string;
  readonly status: number;
  readonly className: string;
  readonly description: string;
}

interface ClassInfo {
  readonly name: string;
  readonly doc: string;
  /** Codes named in the constructor: a `code` parameter's type, an options object's `code`, literals passed to super(). */
  readonly paramCodes: string[];
  readonly literalCodes: string[];
  readonly params: ReadonlyArray<{ readonly kind: 'code' | 'options-code' | 'string' | 'number' | 'other' }>;
}

/** The first sentence of a doc comment, on one line. */
function firstSentence(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  const end = flat.search(/\.(\s|$)/);
  return end === -1 ? flat : flat.slice(0, end + 1);
}

/** The text of the last `/** ... *\/` comment in a stretch of source, without its stars. */
function lastDocComment(text: string): string {
  const last = [...text.matchAll(/\/\*\*([\s\S]*?)\*\//g)].at(-1)?.[1];
  if (last === undefined) return '';
  return last
    .split('\n')
    .map((line) => line.replace(/^\s*\* ?/, ''))
    .join(' ');
}

function jsDocText(node: ts.Node, source: ts.SourceFile): string {
  return lastDocComment(source.text.slice(node.getFullStart(), node.getStart(source)));
}

export function generateErrorRows(source: ts.SourceFile = parseErrorsSource()): ErrorCodeRow[] {
  const aliases = new Map<string, string[]>();
  const memberDocs = new Map<string, string>();
  const literalsOf = (type: ts.TypeNode | undefined): string[] => {
    if (type === undefined) return [];
    if (ts.isTypeReferenceNode(type) && ts.isIdentifier(type.typeName)) return aliases.get(type.typeName.text) ?? [];
    const members = ts.isUnionTypeNode(type) ? type.types : [type];
    const found: string[] = [];
    let previousEnd = type.getFullStart();
    for (const m of members) {
      // A union of other unions (`ErrorCode` is the union of each area's codes): their codes, in order.
      if (ts.isTypeReferenceNode(m) && ts.isIdentifier(m.typeName)) found.push(...(aliases.get(m.typeName.text) ?? []));
      if (ts.isLiteralTypeNode(m) && ts.isStringLiteral(m.literal)) {
        found.push(m.literal.text);
        // A member's comment stands before its `|`, so look at all the text since the previous member.
        const doc = lastDocComment(source.text.slice(previousEnd, m.getStart(source)));
        if (doc && !memberDocs.has(m.literal.text)) memberDocs.set(m.literal.text, firstSentence(doc));
      }
      previousEnd = m.getEnd();
    }
    return found;
  };
  const classes: ClassInfo[] = [];
  for (const statement of source.statements) {
    if (ts.isTypeAliasDeclaration(statement)) aliases.set(statement.name.text, literalsOf(statement.type));
    if (!ts.isClassDeclaration(statement) || statement.name === undefined) continue;
    const ctor = statement.members.find(ts.isConstructorDeclaration);
    const params = (ctor?.parameters ?? []).map((p) => {
      const codes = literalsOf(p.type);
      if (codes.length > 0) return { kind: 'code' as const, codes };
      if (p.type && ts.isTypeLiteralNode(p.type)) {
        const member = p.type.members.find((m) => ts.isPropertySignature(m) && m.name.getText(source) === 'code') as ts.PropertySignature | undefined;
        if (member) return { kind: 'options-code' as const, codes: literalsOf(member.type) };
      }
      const kind = p.type?.kind === ts.SyntaxKind.StringKeyword ? 'string' : p.type?.kind === ts.SyntaxKind.NumberKeyword ? 'number' : 'other';
      return { kind: kind as 'string' | 'number' | 'other', codes: [] as string[] };
    });
    const literalCodes: string[] = [];
    const findSuper = (node: ts.Node): void => {
      if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.SuperKeyword && node.arguments[0]) {
        const visit = (n: ts.Node): void => {
          if (ts.isStringLiteral(n) && /^ERR_[A-Z0-9_]+$/.test(n.text)) literalCodes.push(n.text);
          ts.forEachChild(n, visit);
        };
        visit(node.arguments[0]);
      }
      ts.forEachChild(node, findSuper);
    };
    if (ctor) findSuper(ctor);
    classes.push({
      name: statement.name.text,
      doc: firstSentence(jsDocText(statement, source)),
      paramCodes: params.flatMap((p) => p.codes),
      literalCodes,
      params: params.map((p) => ({ kind: p.kind })),
    });
  }
  const allCodes = aliases.get('ErrorCode');
  if (allCodes === undefined || allCodes.length === 0) throw new Error('src/errors.ts: no `ErrorCode` union of string literals');
  return allCodes.map((code) => rowFor(code, classes, memberDocs));
}

function rowFor(code: string, classes: readonly ClassInfo[], memberDocs: ReadonlyMap<string, string>): ErrorCodeRow {
  // The class that spells the code out wins over one that only accepts it (StsOAuthError over StsError);
  // SidecarError, which accepts every code, is never the answer.
  const candidates = classes.filter((c) => c.name !== 'SidecarError');
  const owner = candidates.find((c) => c.literalCodes.includes(code)) ?? candidates.find((c) => c.paramCodes.includes(code));
  if (owner === undefined) throw new Error(`src/errors.ts: no error class raises ${code}`);
  const ctor = (errors as unknown as Record<string, new (...args: unknown[]) => errors.SidecarError>)[owner.name];
  if (typeof ctor !== 'function') throw new Error(`src/errors.ts: class ${owner.name} is not exported`);
  const args = owner.params.map((p) => {
    switch (p.kind) {
      case 'code':
        return code;
      case 'options-code':
        return { code };
      case 'string':
        return 'example';
      case 'number':
        return 400;
      default:
        return undefined;
    }
  });
  const instance = new ctor(...args);
  if (instance.code !== code) throw new Error(`new ${owner.name}(...) gave ${instance.code}, expected ${code}`);
  return { code, status: instance.status, className: owner.name, description: memberDocs.get(code) ?? owner.doc };
}

function parseErrorsSource(): ts.SourceFile {
  const path = `${REPO}src/errors.ts`;
  return ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
}

export function errorCodeTable(rows: readonly ErrorCodeRow[] = generateErrorRows()): string {
  const escape = (s: string) => s.replace(/\|/g, '\\|');
  return [
    TABLE_BEGIN,
    '| code | HTTP status | error class | meaning |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| \`${r.code}\` | ${r.status} | \`${r.className}\` | ${escape(r.description)} |`),
    TABLE_END,
  ].join('\n');
}

/** The generated table as it stands in a document, or undefined when the markers are missing. */
export function tableIn(doc: string): string | undefined {
  const begin = doc.indexOf(TABLE_BEGIN);
  const end = doc.indexOf(TABLE_END);
  if (begin === -1 || end === -1 || end < begin) return undefined;
  return doc.slice(begin, end + TABLE_END.length);
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--write')) {
  const doc = readFileSync(DESIGN_DOC, 'utf8');
  const current = tableIn(doc);
  if (current === undefined) throw new Error(`${DESIGN_DOC}: no ${TABLE_BEGIN} ... ${TABLE_END} markers`);
  writeFileSync(DESIGN_DOC, doc.replace(current, errorCodeTable()));
  process.stdout.write(`rewrote the error-code table in ${DESIGN_DOC}\n`);
}

/**
 * The layering of ../shared/STYLE.md as a check (issue 11 item 7): the import graph of src/,
 * read from the import statements of its .ts files, and the rules it must keep.
 *
 * - `proxy/` (and `endpoints/`) never import `sts/`: they see only the TokenProvider.
 * - Lower layers never import `admin/`, `main.ts`, `index.ts` or `cli/`: only main and cli wire.
 * - Product code never imports `devsts/` or `demo/` (the reference STS and the demo are dev
 *   tools); the command dispatcher may load them with a lazy `import()`, so `run` never does.
 * - `inject/` (issue 14) never imports the data path (`proxy/`, `cache/`, `sts/`, `endpoints/`,
 *   `credentials/`): the injector only mutates pod objects.
 *
 * Today's known violations are listed in ALLOWED, each to be removed by issue 11. A new
 * violation fails; so does an allowed one that no longer exists (the list only shrinks).
 */
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SRC = join(REPO, 'src');

/** One import edge between two files of src/, paths relative to src/ (`proxy/headers.ts`). */
interface ImportEdge {
  readonly from: string;
  readonly to: string;
  /** `import('...')`: loaded only when that code runs. */
  readonly dynamic: boolean;
}

const LOWER_LAYERS = ['config', 'credentials', 'sts', 'cache', 'tls', 'proxy', 'endpoints', 'log', 'pki', 'oauth', 'resource', 'http', 'files', 'lifecycle', 'inject', 'dpop'];
/** The injector (issue 14) works on pod objects: it never needs the data path. */
const NOT_FOR_INJECT = ['proxy', 'cache', 'sts', 'endpoints', 'credentials'];
/** Files at the top of src/ that are as low as any layer. */
const LOWER_FILES = ['errors.ts', 'version.ts'];

/** `proxy/forward/tunnel.ts` -> `proxy`; `main.ts` -> `main.ts`. */
function areaOf(file: string): string {
  const slash = file.indexOf('/');
  return slash === -1 ? file : file.slice(0, slash);
}

function isLower(file: string): boolean {
  return LOWER_LAYERS.includes(areaOf(file)) || LOWER_FILES.includes(file);
}

/** Development tools: the reference STS, the demo and the commands that start them. */
function isDevTool(file: string): boolean {
  return ['devsts', 'demo'].includes(areaOf(file)) || /^cli\/(demo|devsts?)[^/]*\.ts$/.test(file);
}

/** Every rule an edge breaks, in words; empty when it keeps them all. */
function brokenRules(edge: ImportEdge): string[] {
  const broken: string[] = [];
  const [fromArea, toArea] = [areaOf(edge.from), areaOf(edge.to)];
  if ((fromArea === 'proxy' || fromArea === 'endpoints') && toArea === 'sts') {
    broken.push(`${fromArea}/ imports sts/ (it must see only the TokenProvider)`);
  }
  if (isLower(edge.from) && (['admin', 'cli'].includes(toArea) || edge.to === 'main.ts' || edge.to === 'index.ts')) {
    broken.push(`a lower layer (${fromArea}) imports ${toArea === edge.to ? edge.to : `${toArea}/`} (only main.ts and cli/ wire the parts)`);
  }
  if (fromArea === 'inject' && NOT_FOR_INJECT.includes(toArea)) {
    broken.push(`inject/ imports ${toArea}/ (the injector mutates pods; it never loads the data path)`);
  }
  if (!isDevTool(edge.from) && (toArea === 'devsts' || toArea === 'demo')) {
    const lazyDispatch = edge.dynamic && edge.from === 'cli/main.ts';
    if (!lazyDispatch) broken.push(`product code imports ${toArea}/ (a development tool)`);
  }
  return broken;
}

/** The relative module specifiers of one file, static and dynamic. */
function importsOf(sourceText: string, fileName = 'x.ts'): Array<{ specifier: string; dynamic: boolean }> {
  const source = ts.createSourceFile(fileName, sourceText, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: Array<{ specifier: string; dynamic: boolean }> = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push({ specifier: node.moduleSpecifier.text, dynamic: false });
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      found.push({ specifier: node.moduleReference.expression.text, dynamic: false });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      // A computed specifier could hide any edge: refuse it rather than miss one.
      found.push({ specifier: arg && ts.isStringLiteralLike(arg) ? arg.text : '<computed>', dynamic: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The import graph of a set of files given as `path relative to src/ -> source text`. */
function importGraph(files: ReadonlyMap<string, string>): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const [from, text] of files) {
    for (const { specifier, dynamic } of importsOf(text, from)) {
      if (specifier === '<computed>') throw new Error(`${from}: import() with a computed specifier; the layering check cannot follow it`);
      if (!specifier.startsWith('.')) continue; // node: builtins and packages
      const to = posix.normalize(posix.join(posix.dirname(from), specifier)).replace(/\.js$/, '.ts');
      if (!files.has(to)) throw new Error(`${from}: imports ${specifier}, which is not a file of src/`);
      edges.push({ from, to, dynamic });
    }
  }
  return edges;
}

function readSrc(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        files.set(relative(SRC, path).split('\\').join('/'), readFileSync(path, 'utf8'));
      }
    }
  };
  walk(SRC);
  return files;
}

/** Files a module loads when imported: its static imports, followed transitively. */
function staticClosure(edges: readonly ImportEdge[], entry: string): Set<string> {
  const seen = new Set([entry]);
  const queue = [entry];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    for (const edge of edges) {
      if (edge.from === file && !edge.dynamic && !seen.has(edge.to)) {
        seen.add(edge.to);
        queue.push(edge.to);
      }
    }
  }
  return seen;
}

/**
 * Violations in today's code, each named by issue 11 and to be removed by it. An entry is
 * `from -> to` exactly, so a second file making the same mistake is still caught.
 */
const ALLOWED: ReadonlyArray<string> = [
];

const edgeName = (e: ImportEdge): string => `${e.from} -> ${e.to}`;

describe('layering of src/ (issue 11 item 7)', () => {
  const edges = importGraph(readSrc());

  it('no import breaks a layering rule, apart from the known ones issue 11 removes', () => {
    const found = edges
      .filter((e) => brokenRules(e).length > 0 && !ALLOWED.includes(edgeName(e)))
      .map((e) => `${edgeName(e)}: ${brokenRules(e).join('; ')}`);
    assert.deepEqual(found, [], `new layering violations:\n  ${found.join('\n  ')}`);
  });

  it('every allow-listed violation still exists (remove an entry once it is fixed)', () => {
    const current = new Set(edges.filter((e) => brokenRules(e).length > 0).map(edgeName));
    assert.deepEqual(ALLOWED.filter((entry) => !current.has(entry)), []);
  });

  it('`run` and the package entry never load the reference STS or the demo (issue 11 item 6)', () => {
    for (const entry of ['cli/main.ts', 'cli/run.ts', 'index.ts', 'verify.ts']) {
      const dev = [...staticClosure(edges, entry)].filter(isDevTool);
      assert.deepEqual(dev, [], `${entry} loads ${dev.join(', ')}`);
    }
  });

  it('reports a deliberate violation of each rule', () => {
    const files = new Map([
      ['proxy/p.ts', "import type { IssuedToken } from '../sts/s.js';\nexport const x = 1;"],
      ['tls/t.ts', "export { y } from '../admin/a.js';"],
      ['cache/c.ts', "const m = await import('../main.js');"],
      ['endpoints/e.ts', "import '../devsts/d.js';"],
      ['cli/main.ts', "await import('../devsts/d.js');"],
      ['cli/run.ts', "import { d } from '../devsts/d.js';"],
      ['sts/s.ts', ''],
      ['admin/a.ts', "import '../sts/s.js';"],
      ['main.ts', ''],
      ['devsts/d.ts', "import '../oauth/o.js';"],
      ['oauth/o.ts', ''],
      ['inject/i.ts', "import '../cache/c.js';"],
    ]);
    const broken = importGraph(files).filter((e) => brokenRules(e).length > 0).map(edgeName);
    assert.deepEqual(broken.sort(), [
      'cache/c.ts -> main.ts',
      'cli/run.ts -> devsts/d.ts',
      'endpoints/e.ts -> devsts/d.ts',
      'inject/i.ts -> cache/c.ts',
      'proxy/p.ts -> sts/s.ts',
      'tls/t.ts -> admin/a.ts',
    ]);
  });

  it('the import parser sees static, re-export, side-effect, type-only and dynamic imports', () => {
    const text = [
      "import a from './a.js';",
      "import type { B } from './b.js';",
      "export * from './c.js';",
      "import './d.js';",
      "const e = await import('./e.js');",
      "// import { f } from './f.js';",
      "const s = \"import g from './g.js'\";",
    ].join('\n');
    assert.deepEqual(importsOf(text), [
      { specifier: './a.js', dynamic: false },
      { specifier: './b.js', dynamic: false },
      { specifier: './c.js', dynamic: false },
      { specifier: './d.js', dynamic: false },
      { specifier: './e.js', dynamic: true },
    ]);
  });
});

describe('package surface (issue 11 item 6)', () => {
  it('the main entry exports the sidecar, not the reference STS or the verifier', async () => {
    const main = (await import('sts-sidecar')) as Record<string, unknown>;
    assert.equal(typeof main['startSidecar'], 'function');
    for (const name of ['startDevSts', 'createWorkloadIssuer', 'verifyBoundToken']) assert.equal(main[name], undefined, name);
  });

  it('sts-sidecar/dev-sts and sts-sidecar/verify resolve through package.json exports', async () => {
    const devSts = await import('sts-sidecar/dev-sts');
    assert.equal(typeof devSts.startDevSts, 'function');
    assert.equal(typeof devSts.createWorkloadIssuer, 'function');
    const verify = await import('sts-sidecar/verify');
    assert.equal(typeof verify.verifyBoundToken, 'function');
    assert.equal(new verify.BoundTokenError('ERR_BOUND_TOKEN_MISMATCH', 'x').status, 401);
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
    assert.deepEqual(Object.keys(pkg.exports).sort(), ['.', './dev-sts', './package.json', './verify']);
  });
});

#!/usr/bin/env node
/**
 * One bundled ES module for the CLI (issue 15): esbuild over tsc's output (dist/src/cli/main.js),
 * every production dependency inlined, node's built-ins left as imports.
 *
 *   node scripts/bundle.mjs [--outdir DIR] [--no-minify] [--single]      (after `npm run build`)
 *
 * - src/http/undici.ts loads undici's files through `createRequire(import.meta.url)`, which
 *   esbuild does not follow; the plugin below turns those calls into plain `require()` for the
 *   bundle, so the same 26 files are inlined and the rest of undici stays out.
 * - The development commands (dev-sts, demo, status, inject) are dynamic `import()`s in
 *   src/cli/main.ts; with `splitting` they become chunks next to the entry, loaded only when used.
 *   `--single` instead leaves them out of the bundle (one file), importing tsc's output in
 *   dist/src/ (a second copy of the modules, for a command that runs alone in its process).
 * - CommonJS dependencies (undici, pino, prom-client) `require` node's built-ins: the banner gives
 *   the module a `require`.
 * - src/version.ts reads `../../package.json` from its own URL: dist/bundle/ sits two levels
 *   below the package root like dist/src/, so it finds the same file.
 */
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const outdir = args.includes('--outdir') ? args[args.indexOf('--outdir') + 1] : `${root}dist/bundle`;
const minify = !args.includes('--no-minify');
const single = args.includes('--single');

/** src/http/undici.js: `load('undici/...')` through createRequire becomes `require('undici/...')`. */
const undiciByPath = {
  name: 'undici-by-path',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/]src[\\/]http[\\/]undici\.js$/ }, async (a) => {
      const source = await readFile(a.path, 'utf8');
      const contents = source.replace(/^const load = createRequire\(import\.meta\.url\);$/m, 'const load = require;');
      if (contents === source) throw new Error('scripts/bundle.mjs: src/http/undici.ts no longer has `const load = createRequire(import.meta.url);`');
      return { contents: contents.replace(/\bload\(/g, 'require('), loader: 'js' };
    });
  },
};

/** --single: main.js's dynamic imports of the development commands stay imports of dist/src/. */
const devCommandsExternal = {
  name: 'dev-commands-external',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (a) => {
      if (a.kind !== 'dynamic-import' || !/[\\/]dist[\\/]src[\\/]cli[\\/]main\.js$/.test(a.importer)) return undefined;
      const target = fileURLToPath(new URL(a.path, `file://${a.importer}`));
      return { path: `../src/${target.slice(`${root}dist/src/`.length)}`, external: true };
    });
  },
};

const result = await build({
  entryPoints: { 'sts-sidecar': `${root}dist/src/cli/main.js` },
  outdir,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: !single,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify,
  legalComments: 'none',
  // Chunks next to the entry: version.ts's '../../package.json' must resolve from any of them.
  chunkNames: '[name]-[hash]',
  banner: { js: "import { createRequire as __bundleCreateRequire } from 'node:module'; const require = __bundleCreateRequire(import.meta.url);" },
  plugins: single ? [undiciByPath, devCommandsExternal] : [undiciByPath],
  metafile: true,
  logLevel: 'warning',
});
const outputs = Object.entries(result.metafile.outputs).map(([file, o]) => `${file} ${(o.bytes / 1024).toFixed(0)} KiB`);
process.stderr.write(`bundle: ${Object.keys(result.metafile.inputs).length} inputs -> ${outputs.length} files${minify ? '' : ' (not minified)'}\n  ${outputs.join('\n  ')}\n`);

#!/usr/bin/env node
/**
 * The CLI as one bundled ES module (issue 15): esbuild over tsc's output (dist/src/cli/main.js),
 * every production dependency inlined, node's built-ins left as imports. Measured against
 * dist/src's ~300 modules in docs/benchmarks.md; why in docs/design.md "Footprint".
 *
 *   node scripts/bundle.mjs [--outdir DIR] [--no-minify] [--split]      (after `npm run build`)
 *
 * Output (default dist/bundle/): `sts-sidecar.mjs`, everything `run`, `check-config` and
 * `token` need in one file; `dev/`, the development commands (status, inject, dev-sts and the
 * demo), which src/cli/main.ts imports on use, as their own bundle with its own copy of the
 * shared code (each runs alone in its process). The directory needs nothing else: no
 * node_modules, no dist/src, no package.json.
 * `--split` instead lets esbuild split shared code into chunks (the run path is then 9 files);
 * kept for measuring.
 *
 * - src/http/undici.ts loads undici's files through `createRequire(import.meta.url)`, which
 *   esbuild does not follow; the plugin turns those calls into plain `require()`, so the same
 *   files are inlined and the rest of undici stays out.
 * - src/version.ts reads package.json at run time; the bundle carries the version instead.
 * - Development dependencies (@grpc/grpc-js for the demo) are not inlined: imported on use from
 *   node_modules when installed, as dist/src does; `run` never reaches them.
 * - CommonJS dependencies (undici, pino, prom-client) `require` node's built-ins: the banner gives
 *   each output file a `require`.
 */
import { build } from 'esbuild';
import { readFile, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const outdir = args.includes('--outdir') ? args[args.indexOf('--outdir') + 1] : join(root, 'dist', 'bundle');
const minify = !args.includes('--no-minify');
const split = args.includes('--split');
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
const version = pkg.version;
/** Development dependencies stay imports: the demo loads @grpc/grpc-js on use when installed (a checkout), as from dist/src. */
const external = Object.keys(pkg.devDependencies ?? {}).flatMap((name) => [name, `${name}/*`]);
const srcDir = join(root, 'dist', 'src');

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

/** src/version.js: the version, fixed at build time. */
const inlineVersion = {
  name: 'inline-version',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/]src[\\/]version\.js$/ }, () => ({
      contents: `/** The package version (inlined by scripts/bundle.mjs). */\nexport const VERSION = ${JSON.stringify(version)};\n`,
      loader: 'js',
    }));
  },
};

/** main.js's dynamic imports (the development commands) -> `./dev/<file>.mjs`, built below. */
const devEntries = {};
const devCommandsApart = {
  name: 'dev-commands-apart',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (a) => {
      if (a.kind !== 'dynamic-import' || !/[\\/]dist[\\/]src[\\/]cli[\\/]main\.js$/.test(a.importer)) return undefined;
      const target = join(a.resolveDir, a.path);
      const name = relative(srcDir, target).replace(/\.js$/, '').replace(/[\\/]/g, '-');
      devEntries[name] = target;
      return { path: `./dev/${name}.mjs`, external: true };
    });
  },
};

const common = {
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify,
  legalComments: 'none',
  outExtension: { '.js': '.mjs' },
  banner: { js: "import { createRequire as __bundleCreateRequire } from 'node:module'; const require = __bundleCreateRequire(import.meta.url);" },
  external,
  metafile: true,
  logLevel: 'warning',
};
// The script owns its output directory: chunks of an earlier build (other hashes) go.
await rm(outdir, { recursive: true, force: true });
const entryPoints = { 'sts-sidecar': join(srcDir, 'cli', 'main.js') };
const results = [];
if (split) {
  results.push(await build({ ...common, entryPoints, outdir, splitting: true, plugins: [undiciByPath, inlineVersion] }));
} else {
  results.push(await build({ ...common, entryPoints, outdir, plugins: [undiciByPath, inlineVersion, devCommandsApart] }));
  results.push(await build({ ...common, entryPoints: devEntries, outdir: join(outdir, 'dev'), splitting: true, plugins: [undiciByPath, inlineVersion] }));
}
const outputs = results.flatMap((r) => Object.entries(r.metafile.outputs)).map(([file, o]) => `${file} ${(o.bytes / 1024).toFixed(0)} KiB`);
process.stderr.write(`bundle: ${outputs.length} files${minify ? '' : ' (not minified)'}${split ? ' (split)' : ''}\n  ${outputs.slice(0, 3).join('\n  ')}${outputs.length > 3 ? '\n  ...' : ''}\n`);

/**
 * The npm package as a user gets it (issue 14): `npm pack`, then `npm install -g` of the
 * tarball into a temporary prefix, then the installed `sts-sidecar` command. The tarball holds
 * package.json, the README and dist/src only (no tests, sources or source maps); the bin is a
 * node script with a shebang that npm links and makes executable; only the production
 * dependencies are installed. Packs from this checkout's dist/ (`npm test` builds it first),
 * with --ignore-scripts so `prepare` does not compile a second time; installs with
 * --prefer-offline so npm's cache answers when it can.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, constants, mkdtemp, readFile, readdir, readlink, realpath, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './helpers/manifests.js';

const run = promisify(execFile);

interface PackResult {
  readonly filename: string;
  readonly files: { path: string; mode: number }[];
}

/** The environment without npm's own npm_* variables (set when run via `npm test` or npx). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  // `#!/usr/bin/env node` finds the node that runs this test first (CI also runs the suite on the image's Node.js).
  env['PATH'] = `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`;
  return env;
}

describe('npm package', () => {
  let dir: string;
  let packed: PackResult;
  let prefix: string;
  let bin: string;
  const env = cleanEnv();
  let version: string;

  before(async () => {
    version = (JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
    dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-pack-'));
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: REPO, env });
    packed = (JSON.parse(stdout) as PackResult[])[0]!;
    prefix = join(dir, 'prefix');
    await run('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(dir, packed.filename)], { cwd: dir, env });
    bin = join(prefix, 'bin', 'sts-sidecar');
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the tarball holds package.json, the README and dist/src: no tests, TypeScript sources, source maps or key material', () => {
    assert.equal(packed.filename, `sts-sidecar-${version}.tgz`);
    const paths = packed.files.map((f) => f.path);
    assert.ok(paths.includes('dist/src/cli/main.js'));
    for (const path of paths) {
      assert.ok(['package.json', 'README.md', 'LICENSE'].includes(path) || path.startsWith('dist/src/'), `${path} is packed`);
      assert.doesNotMatch(path, /(^|\/)test\/|\.test\.|\.map$|\.(pem|key|crt|jwk|env)$/, `${path} is packed`);
      assert.ok(!path.endsWith('.ts') || path.endsWith('.d.ts'), `${path}: a TypeScript source is packed`);
    }
  });

  it('installs an executable sts-sidecar: the bin, linked by npm, a node script with a shebang', async () => {
    const target = resolve(dirname(bin), await readlink(bin));
    assert.equal(await realpath(target), await realpath(join(prefix, 'lib', 'node_modules', 'sts-sidecar', 'dist', 'src', 'cli', 'main.js')));
    await access(target, constants.X_OK);
    assert.ok(((await stat(target)).mode & 0o111) !== 0);
    assert.match((await readFile(target, 'utf8')).split('\n', 1)[0]!, /^#!\/usr\/bin\/env node$/);
  });

  it('installs only the production dependencies', async () => {
    const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const top = join(prefix, 'lib', 'node_modules', 'sts-sidecar', 'node_modules');
    const installed = new Set<string>();
    for (const name of await readdir(top)) {
      if (name.startsWith('@')) for (const sub of await readdir(join(top, name))) installed.add(`${name}/${sub}`);
      else installed.add(name);
    }
    for (const dep of Object.keys(pkg.dependencies)) assert.ok(installed.has(dep), `${dep} is missing`);
    for (const dev of Object.keys(pkg.devDependencies)) assert.ok(!installed.has(dev), `development dependency ${dev} is installed`);
  });

  it('`sts-sidecar --version` prints the package version, outside the checkout', async () => {
    const { stdout } = await run(bin, ['--version'], { cwd: dir, env });
    assert.equal(stdout.trim(), version);
  });

  it('`sts-sidecar check-config` exits 0 for a valid example config and 2 for an invalid one', async () => {
    await run(bin, ['check-config', join(REPO, 'deploy', 'sidecar.yaml')], { cwd: dir, env });
    await assert.rejects(run(bin, ['check-config', join(REPO, 'package.json')], { cwd: dir, env }), (err: { code?: unknown }) => err.code === 2);
  });
});

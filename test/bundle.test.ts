/**
 * The one-file build of the CLI (issue 15, scripts/bundle.mjs, `npm run build:bundle`): built
 * from tsc's output into its own directory under dist/; its one file is then copied alone into an
 * empty temporary directory (no node_modules, no package.json, no dev/ next to it) and run as a
 * user would: `--version`, `check-config`, `run` against a fake STS with one request proxied to
 * an upstream. A development command runs from the built directory's `dev/` bundle.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { eventually } from './helpers/eventually.js';
import { startFakeSts } from './helpers/fake-sts.js';
import { startUpstream } from './helpers/upstream.js';
import { walrusRunConfig } from './helpers/cli.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OUT = join(ROOT, 'dist', 'bundle-test');

/** The bundle's file copied alone into an empty temporary directory: `run` needs nothing else. */
let BUNDLE = '';

describe('bundle (scripts/bundle.mjs)', () => {
  let dir: string;
  let config: string;
  before(async () => {
    await run(process.execPath, [join(ROOT, 'scripts', 'bundle.mjs'), '--outdir', OUT], { timeout: 60_000 });
    dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-bundle-'));
    config = join(dir, 'sidecar.yaml');
    BUNDLE = join(dir, 'sts-sidecar.mjs');
    await copyFile(join(OUT, 'sts-sidecar.mjs'), BUNDLE);
  });
  after(async () => {
    await rm(OUT, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  it('names no file outside itself on the path of `run`: every require() and static import is a node built-in', async () => {
    const source = await readFile(BUNDLE, 'utf8');
    const required = [...source.matchAll(/\brequire\(["']([^"']+)["']\)/g)].map((m) => m[1]!);
    const imported = [...source.matchAll(/(?:^|[;}])import\s*(?:[{*][^;"']*?from\s*)?["']([^"']+)["']/gm)].map((m) => m[1]!);
    assert.ok(imported.length > 0);
    assert.deepEqual([...required, ...imported].filter((s) => !s.startsWith('node:')), []);
    // Only the banner's createRequire looks at the file's own place (src/http/undici.ts's
    // and src/version.ts's uses are rewritten by the bundle script).
    assert.equal(source.split('import.meta').length - 1, 1);
  });

  it('a development command runs from dev/ (dev-sts --help exits 0)', async () => {
    const { stdout } = await run(process.execPath, [join(OUT, 'sts-sidecar.mjs'), 'dev-sts', '--help']);
    assert.match(stdout, /dev-sts/);
  });

  it('--version prints package.json\'s version', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const { stdout } = await run(process.execPath, [BUNDLE, '--version']);
    assert.equal(stdout.trim(), pkg.version);
  });

  it('check-config exits 0 for a valid file and 1 for an invalid one', async () => {
    await writeFile(config, ['sts: { url: "http://127.0.0.1:9/token" }', 'subjectToken: { value: x }', 'routes: [{ name: r, host: r.internal, upstream: "http://127.0.0.1:9" }]', ''].join('\n'));
    assert.equal((await run(process.execPath, [BUNDLE, 'check-config', config])).stdout.includes('valid'), true);
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'routes: 7\n');
    await assert.rejects(run(process.execPath, [BUNDLE, 'check-config', bad]), (err: { code?: number }) => err.code !== 0);
  });

  it('run exchanges at the STS, proxies a request with the token, starts no worker thread and drains on SIGTERM', async () => {
    const sts = await startFakeSts();
    const upstream = await startUpstream();
    await writeFile(config, walrusRunConfig(sts.tokenUrl, upstream.url));
    const child = spawn(process.execPath, [BUNDLE, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const line = await eventually(() => out.split('\n').find((l) => l.includes('sts-sidecar listening')), { timeoutMs: 15_000 });
      const { proxy, admin } = JSON.parse(line) as { proxy: string; admin: string };
      const res = await request(`${proxy}/hello`, { headers: { host: 'walrus.internal' } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal(upstream.requests.at(-1)!.headers.authorization, `Bearer ${sts.issued[0]}`);
      assert.equal(sts.issued.length, 1);
      const metrics = await request(`${admin}/metrics`);
      assert.equal(metrics.statusCode, 200);
      assert.match(await metrics.body.text(), /^process_resident_memory_bytes /m);
      // pino writes through sonic-boom on the main thread: no transport, so no worker thread.
      // Node >= 22 names a worker_threads thread "WorkerThread" (V8's and libuv's own are
      // "V8Worker" and "libuv-worker"); Node 20 names every thread "node", so there the names
      // cannot tell and only the newer runtime (the image's, .ci/run's second pass) checks it.
      const threads = await readdir(`/proc/${child.pid}/task`).catch(() => undefined);
      if (threads) {
        const names = (await Promise.all(threads.map((t) => readFile(`/proc/${child.pid}/task/${t}/comm`, 'utf8').catch(() => '')))).map((n) => n.trim());
        assert.deepEqual(names.filter((n) => n === 'WorkerThread'), [], names.join(','));
      }
      const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      assert.equal(await exit, 0);
    } finally {
      child.kill('SIGKILL');
      await upstream.close();
      await sts.close();
    }
  });
});

/**
 * The bin as users run it: `demo`, `run` with a config file and SIGTERM, `--help`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { startDevSts } from '../src/devsts/index.js';
import { eventually } from './helpers/eventually.js';
import { startUpstream } from './helpers/harness.js';
import { walrusRunConfig } from './helpers/cli.js';

const BIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = promisify(execFile);

describe('cli', () => {
  it('demo --once runs the embedded default end to end: bound tokens over mTLS, alice\'s token refused over bob\'s certificate (RFC 8705 3)', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'demo', '--once'], { timeout: 30_000 });
    assert.match(stdout, /reference STS +https:\/\/127\.0\.0\.1:\d+\/token +\(mTLS, client certificate required/);
    assert.match(stdout, /App -> upstream directly, no token: +HTTP 401/);
    assert.match(stdout, /App -> sidecar -> upstream \(token added\): +HTTP 200 .*"sub":"system:serviceaccount:demo:orders-client"/);
    assert.match(stdout, /A host no route names gets no token: +HTTP 404/);
    assert.match(stdout, /A legacy app with http_proxy=http:\/\/127\.0\.0\.1:\d+ asking for http:\/\/orders\.demo\/orders\/9: HTTP 200/);
    // The identity's thumbprint, and the same value as the cnf of the token the sidecar injected.
    const thumbprint = /x5t#S256 ([A-Za-z0-9_-]{43}) +\(RFC 8705 3\.1/.exec(stdout)?.[1];
    assert.ok(thumbprint, stdout);
    assert.ok(stdout.includes(`"cnf":{"x5t#S256":"${thumbprint}"}`), 'the upstream saw a token bound to the identity');
    assert.match(stdout, /it is bound to alice's certificate/);
    assert.match(stdout, /presented over alice's certificate: +HTTP 200/);
    assert.match(stdout, /presented over bob's certificate: +HTTP 401 .*"code":"ERR_BOUND_TOKEN_MISMATCH"/);
    assert.match(stdout, /curl -s http:\/\/127\.0\.0\.1:\d+\/orders\/42/);
    // Issue 12: a gRPC app through the sidecar (h2c in, TLS h2 out with the bound token).
    assert.match(stdout, /gRPC app -> gRPC upstream directly \(alice's certificate, no token\): UNAUTHENTICATED/);
    assert.match(stdout, /gRPC app -> sidecar http:\/\/127\.0\.0\.1:\d+ \(h2c\) -> gRPC upstream \(TLS, h2\), token added: OK .*"sub":"system:serviceaccount:demo:orders-client"/);
    // The demo prints claims, never a token.
    assert.doesNotMatch(stdout, /eyJ[A-Za-z0-9_-]{10,}\./);
    // Its certificates and keys are gone once it exits.
    const dir = /(\/\S*sts-sidecar-demo-[A-Za-z0-9]+)\/alice\.crt/.exec(stdout)?.[1];
    assert.ok(dir, stdout);
    await assert.rejects(access(dir), { code: 'ENOENT' });
  });

  it('run --config serves traffic and drains on SIGTERM, exiting 0', async () => {
    const sts = await startDevSts();
    const upstream = await startUpstream();
    const dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-cli-'));
    const config = join(dir, 'sidecar.yaml');
    await writeFile(config, walrusRunConfig(sts.tokenUrl, upstream.url));
    const child = spawn(process.execPath, [BIN, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await eventually(() => out.includes('sts-sidecar listening'), { timeoutMs: 10_000 }).catch(() => {});
      const line = JSON.parse(out.split('\n').find((l) => l.includes('sts-sidecar listening'))!) as { proxy: string; admin: string };
      const res = await request(`${line.proxy}/hello`, { headers: { host: 'walrus.internal' } });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal(upstream.requests.at(-1)!.headers.authorization, 'Bearer iamthewalrus');

      const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      assert.equal(await exit, 0);
      assert.match(out, /shutting down/);
    } finally {
      child.kill('SIGKILL');
      await upstream.close();
      await sts.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('run with a config naming an unreadable subject token file fails at start-up naming the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sts-sidecar-cli-'));
    const config = join(dir, 'sidecar.yaml');
    await writeFile(
      config,
      [
        'proxy: { listen: "127.0.0.1:0" }',
        'admin: { listen: "127.0.0.1:0" }',
        `subjectToken: { file: "${join(dir, 'missing-token')}" }`,
        'sts: { url: "http://127.0.0.1:9/token" }',
        'routes: [{ name: r, host: r.internal, upstream: "http://127.0.0.1:9" }]',
      ].join('\n'),
    );
    try {
      const result = await run(process.execPath, [BIN, 'run', '--config', config]).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code: number; stderr: string }) => err,
      );
      assert.equal(result.code, 2);
      assert.match(result.stderr, /subjectToken\.file: cannot read .*missing-token: ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('--help works for every command', async () => {
    const commands = [['--help'], ['run', '--help'], ['check-config', '--help'], ['dev-sts', '--help'], ['demo', '--help']];
    // Started together: each is a node start-up, and they do not depend on each other.
    const outputs = await Promise.all(commands.map((args) => run(process.execPath, [BIN, ...args])));
    for (const [i, { stdout }] of outputs.entries()) {
      const args = commands[i]!;
      assert.match(stdout, /Usage/i, `no usage for ${args.join(' ')}`);
    }
  });
});

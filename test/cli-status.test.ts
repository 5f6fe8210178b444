/**
 * Issue 13: `sts-sidecar status` as users run it, the built bin against a real sidecar:
 * exit 0 when ready, 1 when not, 2 when nothing answers; tables by default, JSON with --json,
 * the admin URL from --admin or $STS_SIDECAR_ADMIN.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { closeAfter, startHarness } from './helpers/harness.js';
import { oauthError, startFakeSts } from './helpers/fake-sts.js';
import type { StatusReport } from '../src/admin/status.js';

const BIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function status(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const { STS_SIDECAR_ADMIN: _ignored, ...inherited } = process.env;
    execFile(process.execPath, [BIN, 'status', ...args], { timeout: 20_000, env: { ...inherited, ...env } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A loopback port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const route = { name: 'orders', host: 'orders.test', upstream: 'http://127.0.0.1:9' };

describe('sts-sidecar status (issue 13)', () => {
  test('ready: exit 0, the tables by default, the report with --json, the URL from $STS_SIDECAR_ADMIN', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const h = own(await startHarness({ subjectToken: { value: 'subject-token-cli-status' }, sts: { url: sts.tokenUrl }, routes: [route] }));

    const tables = await status(['--admin', h.sidecar.adminUrl]);
    assert.equal(tables.code, 0, tables.stderr);
    assert.match(tables.stdout, /: ready\n/);
    assert.match(tables.stdout, /^ROUTES$/m);
    assert.match(tables.stdout, /^ {2}orders +yes +\d+m\d+s/m);

    const json = await status(['--json'], { STS_SIDECAR_ADMIN: h.sidecar.adminUrl.replace('http://', '') });
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as StatusReport;
    assert.equal(report.ready, true);
    assert.equal(report.routes[0]!.name, 'orders');
    for (const text of [tables.stdout, json.stdout]) assert.ok(!text.includes(sts.issued[0]!) && !text.includes('subject-token-cli-status'));
  });

  test('not ready (the STS refuses): exit 1, the error code shown', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts({ answer: oauthError('invalid_grant') }));
    const h = own(await startHarness({ subjectToken: { value: 'subject-token-cli-status' }, sts: { url: sts.tokenUrl }, routes: [route] }));
    const run = await status(['--admin', h.sidecar.adminUrl]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /NOT READY/);
    assert.match(run.stdout, /ERR_STS_OAUTH_ERROR/);
  });

  test('unreachable: exit 2 naming the URL; a bad option: exit 2', async () => {
    const port = await closedPort();
    const run = await status(['--admin', `http://127.0.0.1:${port}`]);
    assert.equal(run.code, 2);
    assert.equal(run.stdout, '');
    assert.ok(run.stderr.includes(`http://127.0.0.1:${port}/status`), run.stderr);
    assert.equal((await status(['--bogus'])).code, 2);
  });
});

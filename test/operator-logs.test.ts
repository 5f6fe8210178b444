/**
 * Issue 13, logs for operators: at info each route's first token (issuer, subject, audience,
 * expiry; never the token) and a recovery after failures; refreshes at debug only; an
 * expected failure at warn as one line with its code and cause and no stack (a stack only for
 * an unexpected error); `log.format: pretty` one human line per record; `run --log-level`.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { closeAfter, parsedLogs, startHarness } from './helpers/harness.js';
import { startFakeSts } from './helpers/fake-sts.js';
import { tempDir } from './helpers/loopback.js';
import { eventually } from './helpers/eventually.js';
import { createLogger } from '../src/log/logger.js';
import { prettyLine } from '../src/log/pretty.js';
import { StsError } from '../src/errors.js';
import { runCli } from './helpers/cli.js';

const BIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function jwt(claims: Record<string, unknown>): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part(claims)}.c2lnbmF0dXJl`;
}

const route = { name: 'orders', host: 'orders.test', upstream: 'http://127.0.0.1:9', audience: ['orders.api'] };
const fastRetries = { retryInitialDelaySeconds: 0.01, retryMaxDelaySeconds: 0.02 };
const byMsg = (logs: string[], msg: string) => parsedLogs(logs).filter((l) => l['msg'] === msg);

describe('operator logs (issue 13)', () => {
  test("a route's first token at info: issuer, subject, audience, expiry; never the token", async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts({ makeToken: (n) => jwt({ iss: 'https://sts.test', sub: 'orders-app', aud: ['orders.api'], exp: Math.floor(Date.now() / 1000) + 3600, n }) }));
    const h = own(await startHarness({ log: { level: 'info' }, subjectToken: { value: 'subject-token-operator-logs' }, sts: { url: sts.tokenUrl }, routes: [route] }));
    const [first, ...more] = byMsg(h.logs, 'first token for route orders');
    assert.ok(first, h.logs.join(''));
    assert.equal(more.length, 0);
    assert.equal(first['level'], 'info');
    assert.equal(first['route'], 'orders');
    assert.equal(first['issuer'], 'https://sts.test');
    assert.equal(first['subject'], 'orders-app');
    assert.deepEqual(first['audience'], ['orders.api']);
    // The sidecar's expiry is its own clock plus expires_in; the STS's, its clock: the same within the exchange's time.
    assert.ok(Math.abs(Date.parse(String(first['expiresAt'])) - sts.expiry.get(sts.issued[0]!)!) < 5000, String(first['expiresAt']));
    const logs = h.logs.join('');
    assert.ok(!logs.includes(sts.issued[0]!) && !logs.includes(sts.issued[0]!.split('.')[1]!), 'neither the token nor its payload');
  });

  test('failures at warn, one line each with code and cause and no stack; then "route orders recovered after N failed exchanges" at info', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    const h = own(await startHarness({ log: { level: 'info' }, subjectToken: { value: 'subject-token-operator-logs' }, sts: { url: sts.tokenUrl }, cache: fastRetries, routes: [route] }));
    const token = await h.sidecar.tokens.getToken('orders');
    sts.mode = 'down-reset';
    assert.equal(h.sidecar.tokens.invalidate('orders', token.accessToken), true);
    await h.sidecar.tokens.getToken('orders').catch(() => undefined);
    await eventually(() => byMsg(h.logs, 'token exchange failed').length >= 4);
    sts.mode = 'up';
    const recovered = await eventually(() => parsedLogs(h.logs).find((l) => /^route orders recovered after \d+ failed exchanges$/.test(String(l['msg']))));
    const failures = byMsg(h.logs, 'token exchange failed');
    assert.equal(recovered['level'], 'info');
    assert.equal(recovered['failures'], failures.length);
    assert.equal(recovered['msg'], `route orders recovered after ${failures.length} failed exchanges`);

    const lines = h.logs.join('').split('\n').filter((l) => l.includes('token exchange failed'));
    for (const [i, failure] of failures.entries()) {
      assert.equal(failure['level'], 'warn');
      assert.equal(failure['code'], 'ERR_STS_UNREACHABLE');
      assert.equal(failure['failures'], i + 1);
      const err = failure['err'] as { code: string; cause?: { code?: string } };
      assert.equal(err.code, 'ERR_STS_UNREACHABLE');
      assert.equal(err.cause?.code, 'UND_ERR_SOCKET');
      assert.ok(!lines[i]!.includes('"stack"'), lines[i]);
    }
  });

  test('a refresh is logged at debug, never at info', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts({ lifetimeSeconds: 1 }));
    const h = own(await startHarness({ log: { level: 'debug' }, subjectToken: { value: 'subject-token-operator-logs' }, sts: { url: sts.tokenUrl }, routes: [route] }));
    await eventually(() => byMsg(h.logs, 'token refreshed').length >= 1, { timeoutMs: 10_000 });
    assert.ok(byMsg(h.logs, 'token refreshed').every((l) => l['level'] === 'debug' && l['route'] === 'orders' && typeof l['expiresAt'] === 'string'));
    const info = parsedLogs(h.logs).filter((l) => l['level'] === 'info').map((l) => l['msg']);
    assert.deepEqual(info, ['sts-sidecar listening', 'first token for route orders']);
  });

  test('an unexpected error keeps its stack; an expected one (ours, or a system error with a code) has none', () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (l: string) => void lines.push(l) });
    logger.warn({ err: new StsError('ERR_STS_TIMEOUT', 'STS timed out', { cause: Object.assign(new Error('read ETIMEDOUT'), { code: 'ETIMEDOUT' }) }) }, 'expected');
    logger.warn({ err: Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' }) }, 'system');
    logger.error({ err: new TypeError('x is not a function') }, 'bug');
    const [expected, system, bug] = lines.map((l) => JSON.parse(l) as { err: Record<string, unknown> & { cause?: Record<string, unknown> } });
    assert.equal(expected!.err['code'], 'ERR_STS_TIMEOUT');
    assert.equal(expected!.err.cause?.['code'], 'ETIMEDOUT');
    assert.ok(!('stack' in expected!.err) && !('stack' in expected!.err.cause!));
    assert.ok(!('stack' in system!.err));
    assert.match(String(bug!.err['stack']), /TypeError: x is not a function\n {4}at /);
  });

  test('log.format: pretty writes one human line per record: time, level, message, key=value', async (t) => {
    const own = closeAfter(t);
    const sts = own(await startFakeSts());
    sts.mode = 'down-reset';
    const h = own(await startHarness({ log: { level: 'info', format: 'pretty' }, subjectToken: { value: 'subject-token-operator-logs' }, sts: { url: sts.tokenUrl }, routes: [route] }));
    await eventually(() => h.logs.some((l) => l.includes('token exchange failed')));
    for (const write of h.logs) assert.equal(write.indexOf('\n'), write.length - 1, `one line per record: ${write}`);
    const failure = h.logs.find((l) => l.includes('token exchange failed'))!;
    assert.match(failure, /^\d{4}-\d\d-\d\dT[\d:.]+Z WARN  token exchange failed route=orders result=unreachable code=ERR_STS_UNREACHABLE failures=1 ms=\d+ err\.code=ERR_STS_UNREACHABLE err="[^"]+" cause="SocketError UND_ERR_SOCKET: [^"]+"\n$/);
    const listening = h.logs.find((l) => l.includes('sts-sidecar listening'))!;
    assert.match(listening, /^\S+ INFO  sts-sidecar listening proxy=http:\/\/127\.0\.0\.1:\d+ /);
    assert.ok(!h.logs.join('').includes('"level"'), 'no JSON records');
  });

  test('prettyLine: quoting, objects as JSON, an unexpected stack kept on the line', () => {
    const line = prettyLine(JSON.stringify({ level: 'error', time: 'T', pid: 1, hostname: 'h', msg: 'boom', route: 'a b', n: 3, o: { k: 1 }, err: { type: 'TypeError', message: 'bad', stack: 'TypeError: bad\n    at x' } }));
    assert.equal(line, 'T ERROR boom route="a b" n=3 o={"k":1} err=bad stack="TypeError: bad\\n    at x"\n');
    assert.equal(prettyLine('not json'), 'not json\n');
  });

  test('run --log-level overrides log.level; an invalid level exits 2 naming it', async (t) => {
    const sts = await startFakeSts();
    const dir = await tempDir();
    t.after(async () => {
      await sts.close();
      await dir.cleanup();
    });
    const config = join(dir.path, 'sidecar.yaml');
    await writeFile(
      config,
      [
        'proxy: { listen: "127.0.0.1:0" }',
        'admin: { listen: "127.0.0.1:0" }',
        'log: { level: warn }',
        'subjectToken: { value: subject-token-operator-logs }',
        `sts: { url: "${sts.tokenUrl}" }`,
        'routes: [{ name: orders, host: orders.test, upstream: "http://127.0.0.1:9" }]',
      ].join('\n'),
    );
    const invalid = await runCli(['run', '--config', config, '--log-level', 'loud']);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /"loud"/);

    const child = spawn(process.execPath, [BIN, 'run', '--config', config, '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // A warn-level file would hide both: the info line of the first token and the debug line of a request.
    await eventually(() => out.includes('first token for route orders'), { timeoutMs: 10_000 });
    const { proxy } = JSON.parse(out.split('\n').find((l) => l.includes('sts-sidecar listening'))!) as { proxy: string };
    await (await request(`${proxy}/`, { headers: { host: 'orders.test' } })).body.dump();
    await eventually(() => out.split('\n').some((l) => l.includes('"level":"debug"') && l.includes('"msg":"proxied"')));
    const exit = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    assert.equal(await exit, 0);
  });
});

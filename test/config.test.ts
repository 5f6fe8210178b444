/**
 * Configuration at the edge: YAML/JSON text -> validated, deep-frozen Config, every
 * problem reported with the key path that names it; and `check-config` as a user runs it.
 */
import { after, before, describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigValidationError, loadConfigFile, parseConfig, parseConfigText, type ConfigProblem } from '../src/config/load.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { runCli } from './helpers/cli.js';

const FULL_YAML = `
proxy:
  listen: 127.0.0.1:25001
admin:
  listen: "[::1]:25000"
log:
  level: debug
subjectToken:
  file: /var/run/secrets/tokens/sts-token
  type: urn:ietf:params:oauth:token-type:id_token
  pollIntervalSeconds: 2
sts:
  url: https://sts.example.com/v1/token
  encoding: json
  jsonFieldNames: snake_case
  ca: /etc/sts/ca.pem
  clientAuth:
    method: client_secret_basic
    clientId: sidecar
    clientSecret:
      env: STS_CLIENT_SECRET
  actorToken:
    file: /var/run/secrets/actor
    type: urn:ietf:params:oauth:token-type:jwt
  timeoutSeconds: 3
  maxResponseBytes: 4096
  allowInsecureHttp: false
cache:
  refreshBeforeExpiryRatio: 0.5
  expirySkewSeconds: 10
  retryInitialDelaySeconds: 0.5
  retryMaxDelaySeconds: 20
  maxEntries: 50
shutdown:
  drainSeconds: 7
routes:
  - name: orders
    host: Orders.Example.com
    pathPrefix: /api/
    listen: 127.0.0.1:25002
    upstream: https://orders.internal:8443/base
    audience: [https://orders.example.com, https://billing.example.com]
    resource: https://orders.example.com/api
    scope: [orders.read, orders.write]
    requestedTokenType: urn:ietf:params:oauth:token-type:jwt
    options:
      userProject: "1234"
    lazy: true
    authorization:
      header: X-Api-Token
      scheme: Token
      replaceExisting: false
    preserveHost: true
    upstreamTimeoutSeconds: 12
`;

const MINIMAL_YAML = `
subjectToken: { value: tok }
sts: { url: "https://sts.example.com/token" }
routes:
  - { name: r, host: r.example, upstream: "https://r.internal", scope: [a, b], audience: https://r.example }
`;

/** The smallest valid config, as a fresh object each time so a test can break one key. */
function minimal(): Record<string, any> {
  return {
    subjectToken: { file: '/var/run/secrets/token' },
    sts: { url: 'https://sts.example.com/token' },
    routes: [{ name: 'orders', host: 'orders.example.com', upstream: 'https://orders.internal' }],
  };
}

function problemsOf(input: unknown): readonly ConfigProblem[] {
  try {
    parseConfig(input);
  } catch (err) {
    assert.ok(err instanceof ConfigValidationError, `expected ConfigValidationError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_CONFIG_INVALID');
    return err.problems;
  }
  assert.fail('the configuration should have been rejected');
}

function assertRejectedAt(input: unknown, path: string): void {
  const problems = problemsOf(input);
  assert.ok(
    problems.some((p) => p.path === path),
    `expected a problem at "${path}", got ${JSON.stringify(problems)}`,
  );
}

function assertDeepFrozen(value: unknown, where = 'config'): void {
  if (value === null || typeof value !== 'object') return;
  assert.ok(Object.isFrozen(value), `${where} is not frozen`);
  for (const [key, child] of Object.entries(value)) assertDeepFrozen(child, `${where}.${key}`);
}

describe('a valid configuration', () => {
  test('a YAML file using every key parses into the normalised shape', () => {
    const c = parseConfigText(FULL_YAML);
    assert.deepEqual(c.proxy.listen, { host: '127.0.0.1', port: 25001 });
    assert.deepEqual(c.admin.listen, { host: '::1', port: 25000 });
    assert.equal(c.log.level, 'debug');
    assert.deepEqual({ ...c.subjectToken }, {
      file: '/var/run/secrets/tokens/sts-token',
      type: 'urn:ietf:params:oauth:token-type:id_token',
      pollIntervalSeconds: 2,
    });
    assert.ok(c.sts.url instanceof URL);
    assert.equal(c.sts.url.href, 'https://sts.example.com/v1/token');
    assert.equal(c.sts.encoding, 'json');
    assert.equal(c.sts.jsonFieldNames, 'snake_case');
    assert.equal(c.sts.ca, '/etc/sts/ca.pem');
    assert.deepEqual(c.sts.clientAuth, { method: 'client_secret_basic', clientId: 'sidecar', clientSecret: { env: 'STS_CLIENT_SECRET' } });
    assert.deepEqual(c.sts.actorToken, { file: '/var/run/secrets/actor', type: 'urn:ietf:params:oauth:token-type:jwt' });
    assert.equal(c.sts.timeoutSeconds, 3);
    assert.equal(c.sts.maxResponseBytes, 4096);
    assert.equal(c.sts.allowInsecureHttp, false);
    assert.deepEqual({ ...c.cache }, {
      refreshBeforeExpiryRatio: 0.5,
      expirySkewSeconds: 10,
      retryInitialDelaySeconds: 0.5,
      retryMaxDelaySeconds: 20,
      maxEntries: 50,
    });
    assert.equal(c.shutdown.drainSeconds, 7);
    assert.equal(c.routes.length, 1);
    const r = c.routes[0]!;
    assert.equal(r.name, 'orders');
    assert.equal(r.host, 'orders.example.com', 'host is lower-cased');
    assert.equal(r.pathPrefix, '/api/');
    assert.deepEqual(r.listen, { host: '127.0.0.1', port: 25002 });
    assert.equal(r.upstream?.href, 'https://orders.internal:8443/base');
    assert.deepEqual(r.audience, ['https://orders.example.com', 'https://billing.example.com']);
    assert.deepEqual(r.resource, ['https://orders.example.com/api'], 'a single resource becomes a list');
    assert.equal(r.scope, 'orders.read orders.write', 'a scope list becomes space-delimited (RFC 6749 section 3.3)');
    assert.equal(r.requestedTokenType, 'urn:ietf:params:oauth:token-type:jwt');
    assert.deepEqual(r.options, { userProject: '1234' });
    assert.equal(r.lazy, true);
    assert.deepEqual({ ...r.authorization }, { header: 'x-api-token', scheme: 'Token', replaceExisting: false });
    assert.equal(r.preserveHost, true);
    assert.equal(r.upstreamTimeoutSeconds, 12);
  });

  test('defaults are filled in', () => {
    const c = parseConfig(minimal());
    assert.deepEqual(c.proxy.listen, { host: '127.0.0.1', port: 15001 });
    assert.deepEqual(c.admin.listen, { host: '127.0.0.1', port: 15000 });
    assert.equal(c.log.level, 'info');
    assert.equal(c.subjectToken.type, 'urn:ietf:params:oauth:token-type:jwt');
    assert.equal(c.sts.encoding, 'form');
    assert.equal(c.sts.jsonFieldNames, 'camelCase');
    assert.deepEqual(c.sts.clientAuth, { method: 'none' });
    assert.equal(c.sts.allowInsecureHttp, false);
    assert.equal(c.cache.refreshBeforeExpiryRatio, 0.25);
    assert.equal(c.cache.expirySkewSeconds, 5);
    const r = c.routes[0]!;
    assert.equal(r.pathPrefix, '/');
    assert.equal(r.authorization.header, 'authorization');
    assert.equal(r.authorization.scheme, 'Bearer');
    assert.equal(r.authorization.replaceExisting, true);
    assert.equal(r.requestedTokenType, 'urn:ietf:params:oauth:token-type:access_token');
    assert.equal(r.lazy, false);
    assert.equal(r.audience, undefined);
    assert.equal(r.scope, undefined);
  });

  test('scope [a, b] becomes "a b" and an audience string becomes a list', () => {
    const c = parseConfigText(MINIMAL_YAML);
    assert.equal(c.routes[0]!.scope, 'a b');
    assert.deepEqual(c.routes[0]!.audience, ['https://r.example']);
  });

  test('the result is deep-frozen', () => {
    const c = parseConfigText(FULL_YAML);
    assertDeepFrozen(c);
    assert.throws(() => {
      (c.routes as unknown as unknown[]).push({});
    }, TypeError);
    assert.throws(() => {
      (c.routes[0]!.authorization as { scheme: string }).scheme = 'Basic';
    }, TypeError);
    assert.throws(() => {
      (c.routes[0]!.audience as string[])[0] = 'https://evil.example';
    }, TypeError);
    assert.equal(c.routes[0]!.authorization.scheme, 'Token');
  });

  test('JSON text is accepted too', () => {
    const c = parseConfigText(JSON.stringify({ ...minimal(), log: { level: 'warn' } }));
    assert.equal(c.log.level, 'warn');
    assert.equal(c.routes[0]!.name, 'orders');
    assert.equal(c.sts.url.href, 'https://sts.example.com/token');
  });
});

describe('an invalid configuration names the key at fault', () => {
  test('unknown top-level key', () => {
    assertRejectedAt({ ...minimal(), prxy: { listen: '127.0.0.1:1' } }, 'prxy');
  });

  test('unknown key inside a route', () => {
    const c = minimal();
    c['routes'][0].upstreem = c['routes'][0].upstream;
    delete c['routes'][0].upstream;
    const problems = problemsOf(c);
    assert.ok(problems.some((p) => p.path === 'routes[0].upstreem' && /unknown key/.test(p.problem)), JSON.stringify(problems));
    assert.ok(problems.some((p) => p.path === 'routes[0].upstream'), JSON.stringify(problems));
  });

  test('missing sts.url', () => {
    const c = minimal();
    delete c['sts'].url;
    assertRejectedAt(c, 'sts.url');
  });

  test('sts.url not a URL', () => {
    const c = minimal();
    c['sts'].url = 'not a url';
    assertRejectedAt(c, 'sts.url');
  });

  test('an ftp:// sts.url', () => {
    const c = minimal();
    c['sts'].url = 'ftp://sts.example.com/token';
    assertRejectedAt(c, 'sts.url');
  });

  test('sts.url with credentials in it', () => {
    const c = minimal();
    c['sts'].url = 'https://id:secret@sts.example.com/token';
    assertRejectedAt(c, 'sts.url');
  });

  test('plain http to an STS off loopback needs allowInsecureHttp', () => {
    const c = minimal();
    c['sts'].url = 'http://sts.example.com/token';
    assertRejectedAt(c, 'sts.url');
    c['sts'].allowInsecureHttp = true;
    assert.equal(parseConfig(c).sts.url.href, 'http://sts.example.com/token');
  });

  test('plain http to a loopback STS is accepted without allowInsecureHttp', () => {
    for (const url of ['http://127.0.0.1:8080/token', 'http://localhost:8080/token', 'http://[::1]:8080/token']) {
      const c = minimal();
      c['sts'].url = url;
      assert.equal(parseConfig(c).sts.url.href, url);
    }
  });

  test(
    'a DNS name that merely starts with "127." is not loopback',
    () => {
      const c = minimal();
      c['sts'].url = 'http://127.0.0.1.nip.io/token';
      assertRejectedAt(c, 'sts.url');
    },
  );

  test('subjectToken with both file and value', () => {
    const c = minimal();
    c['subjectToken'] = { file: '/t', value: 'inline' };
    assertRejectedAt(c, 'subjectToken');
  });

  test('subjectToken with none of file, env, value', () => {
    const c = minimal();
    c['subjectToken'] = { type: 'urn:ietf:params:oauth:token-type:jwt' };
    assertRejectedAt(c, 'subjectToken');
  });

  test('proxy.listen without a host', () => {
    assertRejectedAt({ ...minimal(), proxy: { listen: '15001' } }, 'proxy.listen');
  });

  test('proxy.listen with a DNS name', () => {
    assertRejectedAt({ ...minimal(), proxy: { listen: 'example.com:15001' } }, 'proxy.listen');
  });

  test('routes: []', () => {
    assertRejectedAt({ ...minimal(), routes: [] }, 'routes');
  });

  test('duplicate route names', () => {
    const c = minimal();
    c['routes'].push({ name: 'orders', host: 'other.example.com', upstream: 'https://other.internal' });
    assertRejectedAt(c, 'routes[1].name');
  });

  test('two routes with the same host and pathPrefix (host compared case-insensitively)', () => {
    const c = minimal();
    c['routes'].push({ name: 'orders-2', host: 'ORDERS.example.com', pathPrefix: '/', upstream: 'https://other.internal' });
    assertRejectedAt(c, 'routes[1].pathPrefix');
    // The same host under another prefix is fine.
    c['routes'][1].pathPrefix = '/v2/';
    assert.equal(parseConfig(c).routes.length, 2);
  });

  test('a route with neither host nor listen', () => {
    const c = minimal();
    delete c['routes'][0].host;
    assertRejectedAt(c, 'routes[0]');
  });

  test('a pathPrefix not starting with "/"', () => {
    const c = minimal();
    c['routes'][0].pathPrefix = 'api/';
    assertRejectedAt(c, 'routes[0].pathPrefix');
  });

  test('log.level: loud', () => {
    assertRejectedAt({ ...minimal(), log: { level: 'loud' } }, 'log.level');
  });

  test('sts.encoding: xml', () => {
    const c = minimal();
    c['sts'].encoding = 'xml';
    assertRejectedAt(c, 'sts.encoding');
  });

  test('client_secret_basic without clientId', () => {
    const c = minimal();
    c['sts'].clientAuth = { method: 'client_secret_basic', clientSecret: { value: 's3cret' } };
    assertRejectedAt(c, 'sts.clientAuth.clientId');
  });

  test('cache.refreshBeforeExpiryRatio: 1.5', () => {
    assertRejectedAt({ ...minimal(), cache: { refreshBeforeExpiryRatio: 1.5 } }, 'cache.refreshBeforeExpiryRatio');
  });

  test('a configuration that is not a mapping', () => {
    assertRejectedAt(['routes'], '');
  });

  test('multiple problems are all reported in one error', () => {
    const c = minimal();
    c['colour'] = 'blue';
    c['log'] = { level: 'loud' };
    c['sts'].encoding = 'xml';
    c['routes'][0].pathPrefix = 'api';
    c['cache'] = { refreshBeforeExpiryRatio: 1.5 };
    const paths = problemsOf(c).map((p) => p.path).sort();
    assert.deepEqual(paths, ['cache.refreshBeforeExpiryRatio', 'colour', 'log.level', 'routes[0].pathPrefix', 'sts.encoding']);
  });

  test(
    'cross-field problems are reported alongside field problems',
    () => {
      const c = minimal();
      c['log'] = { level: 'loud' };
      c['routes'].push({ name: 'orders', host: 'other.example.com', upstream: 'https://other.internal' });
      const paths = problemsOf(c).map((p) => p.path).sort();
      assert.deepEqual(paths, ['log.level', 'routes[1].name']);
    },
  );
});

describe('reading configuration text and files', () => {
  let dir: TempDir;
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await dir?.cleanup();
  });

  test('text that is not YAML -> ERR_CONFIG_INVALID', () => {
    assert.throws(() => parseConfigText('routes: [1, 2\nsts: {'), (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'ERR_CONFIG_INVALID');
      return true;
    });
  });

  test('a YAML mapping with a duplicate key -> ERR_CONFIG_INVALID (a later key must not silently win)', () => {
    const valid = `${MINIMAL_YAML}log: { level: info }\n`;
    assert.equal(parseConfigText(valid).log.level, 'info');
    assert.throws(() => parseConfigText(`${valid}log: { level: debug }\n`), { code: 'ERR_CONFIG_INVALID' });
  });

  test('a file that exists is loaded', async () => {
    const path = join(dir.path, 'ok.yaml');
    await writeFile(path, FULL_YAML);
    const c = await loadConfigFile(path);
    assert.equal(c.routes[0]!.name, 'orders');
  });

  test('a missing file -> ERR_CONFIG_UNREADABLE', async () => {
    await assert.rejects(loadConfigFile(join(dir.path, 'does-not-exist.yaml')), { code: 'ERR_CONFIG_UNREADABLE' });
  });
});

describe('sts-sidecar check-config', () => {
  let dir: TempDir;
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await dir?.cleanup();
  });

  const run = (args: string[]) => runCli(args);

  test('a valid file exits 0', async () => {
    const path = join(dir.path, 'valid.yaml');
    await writeFile(path, FULL_YAML);
    const { code, stdout, stderr } = await run(['check-config', path]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /valid/);
    assert.match(stdout, /orders/);
  });

  test('a file with an unknown key exits 2 and names the key path on stderr', async () => {
    const path = join(dir.path, 'typo.yaml');
    await writeFile(path, FULL_YAML.replace('    preserveHost: true', '    preserveHots: true'));
    const { code, stderr } = await run(['check-config', path]);
    assert.equal(code, 2);
    assert.match(stderr, /routes\[0\]\.preserveHots/);
  });

  test('a missing file exits 2', async () => {
    const { code } = await run(['check-config', join(dir.path, 'nope.yaml')]);
    assert.equal(code, 2);
  });

  test('--help exits 0 and prints the usage', async () => {
    const { code, stdout } = await run(['check-config', '--help']);
    assert.equal(code, 0);
    assert.match(stdout, /check-config FILE/);
  });
});

/**
 * deploy/docker-compose.yml without a Docker engine: the file's cross-references (build
 * context, mounts, the config path, scrape target, provisioning paths), then the demo's
 * own services run as processes from their compose command lines, on loopback, with
 * only addresses rewritten: token issuer -> STS -> upstream -> sidecar, and the legacy
 * client's curl calls against them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { request } from 'undici';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { parseConfigText } from '../src/config/load.js';
import { eventually } from './helpers/eventually.js';
import { readYaml, repoPath, type Obj } from './helpers/manifests.js';

const run = promisify(execFile);
const BIN = repoPath('dist', 'src', 'cli', 'main.js');
const DEPLOY = repoPath('deploy');
const IMAGE = 'sts-sidecar:dev';

type Service = Obj & { command?: string[]; volumes?: string[]; environment?: Record<string, string>; depends_on?: Obj | string[] };

let compose: Obj;
let services: Record<string, Service>;

/** `./x:/y:ro` or `name:/y` -> { source, target }. */
function mountsOf(service: Service): Array<{ source: string; target: string }> {
  return (service.volumes ?? []).map((v) => {
    const [source = '', target = ''] = v.split(':');
    return { source, target };
  });
}

/** A path inside a container, resolved to the bind-mounted file in deploy/, if any. */
function hostPathOf(service: Service, containerPath: string): string | undefined {
  for (const m of mountsOf(service)) {
    if (!m.source.startsWith('.')) continue;
    if (containerPath === m.target) return join(DEPLOY, m.source);
    if (containerPath.startsWith(`${m.target}/`)) return join(DEPLOY, m.source, containerPath.slice(m.target.length + 1));
  }
  return undefined;
}

function flag(command: string[], name: string): string | undefined {
  return command.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

describe('deploy/docker-compose.yml', () => {
  before(async () => {
    compose = await readYaml(join(DEPLOY, 'docker-compose.yml'));
    services = compose['services'] as Record<string, Service>;
  });

  it('builds the image from the repository Dockerfile for every service that runs it, and runs only real commands', async () => {
    const own = Object.entries(services).filter(([, s]) => s['image'] === IMAGE);
    assert.deepEqual(own.map(([n]) => n).sort(), ['sidecar', 'sts', 'token-issuer', 'upstream']);
    for (const [name, s] of own) {
      const build = s['build'] as Obj;
      assert.ok(existsSync(join(DEPLOY, String(build['context']), String(build['dockerfile']))), `${name}: build context`);
      assert.equal(s['read_only'], true, `${name}: read-only root`);
      assert.equal(s['user'], '65532:65532', `${name}: the image's uid`);
      assert.deepEqual(s['cap_drop'], ['ALL'], `${name}: capabilities`);
      // The command is the image's CMD (the sidecar) or a subcommand of the bin with its --help.
      const command = s.command ?? ['run'];
      const { stdout } = await run(process.execPath, [BIN, command[0]!, '--help']);
      assert.match(stdout, /Usage/, `${name}: ${command[0]} is a command of the bin`);
    }
    for (const [name, s] of Object.entries(services)) {
      const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
      for (const d of deps) assert.ok(services[String(d)], `${name} depends on unknown ${String(d)}`);
      for (const m of mountsOf(s)) {
        if (m.source.startsWith('.')) assert.ok(existsSync(join(DEPLOY, m.source)), `${name}: ${m.source} does not exist`);
        else assert.ok(m.source in (compose['volumes'] as Obj), `${name}: volume ${m.source} is not declared`);
      }
    }
  });

  it('the sidecar gets its config where the image looks, the token where the issuer writes it, and Prometheus scrapes its admin port', async () => {
    const sidecar = services['sidecar']!;
    assert.equal(sidecar.command, undefined, 'the sidecar runs the image default: run --config /etc/sts-sidecar/config.yaml');
    const configFile = hostPathOf(sidecar, '/etc/sts-sidecar/config.yaml');
    assert.ok(configFile && existsSync(configFile), 'deploy/sidecar.yaml is mounted at the image default config path');
    const { stdout } = await run(process.execPath, [BIN, 'check-config', configFile]);
    assert.match(stdout, /valid/);
    const config = parseConfigText(await readFile(configFile, 'utf8'));

    const issuer = services['token-issuer']!;
    const written = posix.join(flag(issuer.command!, 'out')!, flag(issuer.command!, 'file')!);
    assert.equal(config.subjectToken.file, written, 'the sidecar reads the file the issuer writes');
    const shared = (s: Service) => mountsOf(s).find((m) => written.startsWith(`${m.target}/`))?.source;
    assert.ok(shared(issuer) && shared(issuer) === shared(sidecar), 'through the same volume');

    const prometheus = services['prometheus']!;
    const promConfig = await readYaml(hostPathOf(prometheus, '/etc/prometheus/prometheus.yml')!);
    const targets = (promConfig['scrape_configs'] as Obj[]).flatMap((j) => ((j['static_configs'] as Obj[]) ?? []).flatMap((c) => c['targets'] as string[]));
    assert.deepEqual(targets, [`sidecar:${config.admin.listen.port}`]);
    assert.notEqual(config.admin.listen.host, '127.0.0.1', 'Prometheus reaches the admin listener from another container');
    for (const rules of promConfig['rule_files'] as string[]) assert.ok(existsSync(hostPathOf(prometheus, rules) ?? ''), `rule file ${rules}`);

    const grafana = services['grafana']!;
    const provider = await readYaml(hostPathOf(grafana, '/etc/grafana/provisioning/dashboards/sts-sidecar.yml')!);
    const dashboards = String(((provider['providers'] as Obj[])[0]!['options'] as Obj)['path']);
    assert.ok(existsSync(hostPathOf(grafana, `${dashboards}/sts-sidecar.json`) ?? ''), 'the dashboard is where the provider looks');
    const home = String((grafana['environment'] as Obj)['GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH']);
    assert.ok(existsSync(hostPathOf(grafana, home) ?? ''), 'the home dashboard path exists');
    const datasources = await readYaml(hostPathOf(grafana, '/etc/grafana/provisioning/datasources/prometheus.yml')!);
    assert.equal((datasources['datasources'] as Obj[])[0]!['url'], 'http://prometheus:9090');
  });

  describe('the demo services, run from their compose command lines on loopback', () => {
    const children: Array<ChildProcessByStdio<null, Readable, Readable>> = [];
    /** `http://service:port` -> the loopback URL its process listens on. */
    const urls = new Map<string, string>();
    let dir: string;
    let proxyUrl = '';
    let tokenFile = '';

    const start = async (name: string, args: string[]): Promise<string> => {
      const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const started = () => (name === 'sidecar' ? out.includes('sts-sidecar listening') : /http:\/\/127\.0\.0\.1:\d+/.test(out));
      await eventually(() => started() || child.exitCode !== null, { timeoutMs: 15_000 }).catch(() => {});
      if (started()) return out;
      assert.fail(`${name} did not start: ${out}`);
    };
    /** Service addresses in a value, replaced by where those services really listen. */
    const resolveUrls = (value: string) => [...urls].reduce((v, [from, to]) => v.replaceAll(from, to), value);

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'compose-demo-'));
      for (const name of ['token-issuer', 'sts', 'upstream']) {
        const command = services[name]!.command!.map((a) => {
          if (a.startsWith('--listen=')) return '--listen=127.0.0.1:0';
          if (a.startsWith('--out=')) return `--out=${join(dir, a.slice('--out='.length))}`;
          if (a.startsWith('--trust-jwks=') || a.startsWith('--jwks-url=')) return resolveUrls(a);
          return a;
        });
        const listen = flag(services[name]!.command!, 'listen')!;
        const out = await start(name, command);
        urls.set(`http://${name}:${listen.split(':').at(-1)}`, /http:\/\/127\.0\.0\.1:\d+/.exec(out)![0]);
      }
      const issuer = services['token-issuer']!.command!;
      tokenFile = join(dir, flag(issuer, 'out')!, flag(issuer, 'file')!);

      const config = parseYaml(await readFile(join(DEPLOY, 'sidecar.yaml'), 'utf8')) as Obj;
      (config['proxy'] as Obj)['listen'] = '127.0.0.1:0';
      (config['admin'] as Obj)['listen'] = '127.0.0.1:0';
      (config['subjectToken'] as Obj)['file'] = tokenFile;
      (config['sts'] as Obj)['url'] = resolveUrls(String((config['sts'] as Obj)['url']));
      for (const r of config['routes'] as Obj[]) r['upstream'] = resolveUrls(String(r['upstream']));
      const configFile = join(dir, 'sidecar.yaml');
      await writeFile(configFile, stringifyYaml(config));
      const out = await start('sidecar', ['run', '--config', configFile]);
      const line = JSON.parse(out.split('\n').find((l) => l.includes('sts-sidecar listening'))!) as { proxy: string; admin: string };
      proxyUrl = line.proxy;
      // As compose's healthcheck gates the client: /readyz answers 200 once the token is exchanged.
      let ready = false;
      const readyz = async () => {
        const res = await request(`${line.admin}/readyz`);
        await res.body.dump();
        return (ready = res.statusCode === 200);
      };
      await eventually(readyz, { timeoutMs: 15_000, intervalMs: 50 }).catch(() => {});
      assert.ok(ready, 'the sidecar never became ready');
      urls.set('http://sidecar:15001', proxyUrl);
    });

    after(async () => {
      for (const c of children) c.kill('SIGTERM');
      await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /** The legacy client's curl lines, run with its environment, addresses resolved. */
    const clientCall = async (match: RegExp): Promise<string> => {
      const client = services['legacy-client']!;
      const script = client.command!.join('\n');
      const line = script.split('\n').map((l) => l.trim()).find((l) => l.startsWith('curl ') && match.test(l));
      assert.ok(line, `no curl line matching ${match}`);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(client.environment ?? {})) env[k] = resolveUrls(String(v));
      const { stdout } = await run('/bin/sh', ['-c', resolveUrls(line)], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env } });
      return stdout;
    };

    it('the token issuer writes the token the kubelet way', async () => {
      assert.equal(await readlink(tokenFile), join('..data', 'sts-token'));
    });

    it('an app that sends Host: orders.demo to the proxy port gets through with a token (200)', async () => {
      assert.match(await clientCall(/-H 'Host: orders\.demo'/), /-> 200$/m);
    });

    it('the legacy client through http_proxy gets through with a token (200)', async () => {
      assert.match(await clientCall(/http:\/\/orders\.demo\//), /-> 200$/m);
    });

    it('without the sidecar the upstream refuses the same call (401)', async () => {
      const upstream = urls.get('http://upstream:8090')!;
      const res = await request(`${upstream}/orders/42`);
      await res.body.dump();
      assert.equal(res.statusCode, 401);
    });
  });
});

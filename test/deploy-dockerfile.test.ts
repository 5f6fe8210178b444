/**
 * The Dockerfile's promises that can be checked without a Docker engine: stages, the
 * runtime user, what the runtime stage copies (production node_modules, dist/src only),
 * the entrypoint in the build output, exec-form ENTRYPOINT/CMD, and what .dockerignore
 * lets into the build context (no node_modules, dist, tests, .git, nothing key-like).
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { find, kustomize, podSpecOf, relativeToRepo, repoPath, type Obj } from './helpers/manifests.js';
import { ENTRYPOINT_NODE_FLAGS } from '../src/cli/runtime-flags.js';

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

interface Stage {
  readonly image: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Dockerfile syntax: comments, `\` continuations, ARG before FROM substituted into FROM. */
function parseDockerfile(text: string): { globalArgs: Map<string, string>; stages: Stage[] } {
  const logical: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line) && pending === '') continue;
    if (/^\s*#/.test(line)) continue; // comment lines inside a continuation are dropped too
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (full) logical.push(full);
  }
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = keyword.toUpperCase();
    if (upper === 'FROM') {
      const expanded = args.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => globalArgs.get((a ?? b)!) ?? '');
      const [image = '', as, name] = expanded.split(/\s+/);
      assert.ok(!as || as.toUpperCase() === 'AS', `FROM ${args}`);
      stages.push({ image, name, instructions: [] });
    } else if (stages.length === 0) {
      if (upper === 'ARG') {
        const [k, v = ''] = args.split('=');
        globalArgs.set(k!, v);
      }
    } else {
      stages.at(-1)!.instructions.push({ keyword: upper, args });
    }
  }
  return { globalArgs, stages };
}

interface Copy {
  readonly from: string | undefined;
  readonly sources: string[];
  readonly dest: string;
}

function copiesOf(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.keyword === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((w) => !w.startsWith('--'));
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
    });
}

function execForm(stage: Stage, keyword: string): string[] {
  const found = stage.instructions.filter((i) => i.keyword === keyword);
  assert.equal(found.length, 1, `one ${keyword} in the runtime stage`);
  const parsed: unknown = JSON.parse(found[0]!.args);
  assert.ok(Array.isArray(parsed) && parsed.every((p) => typeof p === 'string'), `${keyword} is exec form (a JSON array)`);
  return parsed as string[];
}

/** .dockerignore as Docker reads it: last matching pattern wins, `!` re-includes, a match on a parent directory counts. */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/$/, '');
      let re = '';
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i]!;
        if (c === '*' && pattern[i + 1] === '*') {
          if (pattern[i + 2] === '/') {
            re += '(?:.*/)?';
            i += 2;
          } else {
            re += '.*';
            i += 1;
          }
        } else if (c === '*') re += '[^/]*';
        else if (c === '?') re += '[^/]';
        else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (path) => {
    const parts = path.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of rules) {
      if (candidates.some((c) => rule.re.test(c))) excluded = !rule.negate;
    }
    return excluded;
  };
}

async function walk(dir: string, skip: Set<string>): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (skip.has(relativeToRepo(path))) continue;
    if (entry.isDirectory()) out.push(...(await walk(path, skip)));
    else out.push(relativeToRepo(path));
  }
  return out;
}

const KEY_LIKE_NAME = /\.(pem|key|crt|cer|der|p12|pfx|jwk|jwks|env)$|(^|\/)\.env|id_(rsa|ecdsa|ed25519)/i;
const PEM_KEY_BLOCK = /-----BEGIN [A-Z ]*PRIVATE KEY-----\s*\n[A-Za-z0-9+/=\n]{40,}/;
const JWT = /eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/;

describe('Dockerfile', () => {
  let stages: Stage[];
  let globalArgs: Map<string, string>;
  let runtime: Stage;
  let ignored: (path: string) => boolean;

  before(async () => {
    ({ stages, globalArgs } = parseDockerfile(await readFile(repoPath('Dockerfile'), 'utf8')));
    runtime = stages.at(-1)!;
    ignored = dockerignore(await readFile(repoPath('.dockerignore'), 'utf8'));
  });

  it('is multi-stage: a build stage with dev dependencies that compiles and bundles, a runtime stage', () => {
    assert.ok(stages.length >= 2, `${stages.length} stages`);
    const build = stages.find((s) => s.name === 'build');
    assert.ok(build, 'a stage named build');
    const runs = build.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    assert.ok(runs.some((r) => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r)), 'build installs dev dependencies (TypeScript)');
    assert.ok(runs.some((r) => /\bnpm run build\b/.test(r)), 'build compiles');
    assert.ok(runs.some((r) => /\bnode scripts\/bundle\.mjs\b/.test(r)), 'build bundles the CLI (issue 15)');
  });

  it('runs on an LTS Node.js line that is not end-of-life, the one CI also tests on', async () => {
    const major = Number(globalArgs.get('NODE_MAJOR'));
    assert.ok(Number.isInteger(major) && major % 2 === 0 && major >= 22, `NODE_MAJOR=${globalArgs.get('NODE_MAJOR')}`);
    for (const s of stages) assert.match(s.image, new RegExp(`(^node:${major}-|/nodejs${major}-)`), `stage ${s.name ?? '?'} uses Node ${major}`);
    const ci = await readFile(repoPath('.ci', 'run'), 'utf8');
    assert.match(ci, /ARG NODE_MAJOR/, '.ci/run reads the major from the Dockerfile');
    assert.match(ci, /node@\$\{?NODE_MAJOR\}?/, '.ci/run runs the suite on that major');
  });

  it('runtime stage: numeric non-root USER, no shell needed (no RUN), only --from copies', () => {
    const users = runtime.instructions.filter((i) => i.keyword === 'USER');
    assert.equal(users.length, 1);
    const [uid, gid] = users[0]!.args.split(':');
    assert.match(uid!, /^\d+$/, 'numeric uid (runAsNonRoot can verify it)');
    assert.notEqual(Number(uid), 0);
    if (gid !== undefined) assert.match(gid, /^\d+$/);
    assert.equal(runtime.instructions.filter((i) => i.keyword === 'RUN').length, 0, 'no RUN: the runtime image needs no shell');
    for (const c of copiesOf(runtime)) assert.ok(c.from, `COPY ${c.sources.join(' ')} copies from the build context`);
  });

  it('runtime stage: the bundle only, from the build (no node_modules, no dist/src, no dist/test)', () => {
    const copies = copiesOf(runtime);
    assert.deepEqual(copies.filter((c) => c.sources.some((s) => s.includes('node_modules'))), [], 'the bundle carries its dependencies');
    const dist = copies.filter((c) => c.sources.some((s) => s.includes('dist')));
    assert.deepEqual(dist.flatMap((c) => c.sources), ['/src/dist/bundle'], 'dist/bundle only');
    assert.ok(dist.every((c) => c.from === 'build'));
  });

  it('ENTRYPOINT (exec form) runs the bin, which the build produces; CMD runs the config the k8s manifests mount', async () => {
    const entrypoint = execForm(runtime, 'ENTRYPOINT');
    const workdir = runtime.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args ?? '/';
    const script = entrypoint.find((a) => /\.m?js$/.test(a))!;
    assert.ok(script, 'the entrypoint names a script');
    // Issue 15: the node flags the memory sizing assumes (V8 reads them only from the command line).
    for (const flag of ENTRYPOINT_NODE_FLAGS) assert.ok(entrypoint.indexOf(flag) > 0 && entrypoint.indexOf(flag) < entrypoint.indexOf(script), `ENTRYPOINT passes ${flag} to node`);
    // Map the image path back to the build stage's output, then to this checkout's build.
    const copy = copiesOf(runtime).find((c) => script.startsWith(posix.join(workdir, c.dest) + '/'));
    assert.ok(copy?.from === 'build', `${script} is copied from the build stage`);
    const inBuild = posix.join(copy.sources[0]!, script.slice(posix.join(workdir, copy.dest).length));
    const built = repoPath(posix.relative('/src', inBuild));
    // The bundle of the package bin (dist/src/cli/main.js), built by scripts/bundle.mjs.
    assert.equal(relativeToRepo(built), 'dist/bundle/sts-sidecar.mjs');
    const bundler = await readFile(repoPath('scripts', 'bundle.mjs'), 'utf8');
    assert.match(bundler, /sts-sidecar\.mjs/);
    const pkg = JSON.parse(await readFile(repoPath('package.json'), 'utf8')) as { bin: Record<string, string> };
    assert.equal(pkg.bin['sts-sidecar'], 'dist/src/cli/main.js', 'npm users keep the modules; the image runs their bundle');

    const cmd = execForm(runtime, 'CMD');
    assert.equal(cmd[0], 'run');
    const configPath = cmd[cmd.indexOf('--config') + 1];
    const { objects } = await kustomize(repoPath('k8s'));
    const deployment = find(objects, 'Deployment')[0]!.object;
    const sidecar = ((podSpecOf(deployment)!['initContainers'] as Obj[]) ?? []).find((c) => c['name'] === 'sts-sidecar')!;
    assert.deepEqual(sidecar['args'], cmd, 'the Deployment passes the image default explicitly');
    assert.equal(configPath, '/etc/sts-sidecar/config.yaml');
  });

  it('carries OCI labels', () => {
    const labels = runtime.instructions.filter((i) => i.keyword === 'LABEL').map((i) => i.args).join(' ');
    for (const key of ['title', 'description', 'version', 'licenses']) assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${key}=`));
  });

  it('.dockerignore keeps node_modules, dist, tests, .git and local files out of the build context', async () => {
    for (const path of ['node_modules/yaml/package.json', 'dist/src/cli/main.js', 'dist/test/cli.test.js', 'test/cli.test.ts', '.git/HEAD', '.ci/run', 'k8s/base/deployment.yaml', 'deploy/docker-compose.yml', 'README.md', 'src/x/server.pem', 'src/.env']) {
      assert.ok(ignored(path), `${path} is in the build context`);
    }
    for (const path of ['package.json', 'package-lock.json', 'tsconfig.json', 'src/cli/main.ts', 'src/devsts/keys.ts']) {
      assert.ok(!ignored(path), `${path} is missing from the build context`);
    }
  });

  it('the build context has everything the Dockerfile copies from it, and nothing key-like', async () => {
    const context = (await walk(repoPath(), new Set(['.git', 'node_modules', 'dist']))).filter((p) => !ignored(p));
    assert.ok(context.includes('src/cli/main.ts'));
    for (const stage of stages) {
      for (const c of copiesOf(stage).filter((x) => !x.from)) {
        for (const s of c.sources) assert.ok(context.some((p) => p === s || p.startsWith(`${s.replace(/\/$/, '')}/`)), `COPY ${s}: not in the build context`);
      }
    }
    for (const path of context) {
      assert.doesNotMatch(path, KEY_LIKE_NAME, `${path} looks like key material`);
      const text = await readFile(repoPath(path), 'utf8');
      assert.doesNotMatch(text, PEM_KEY_BLOCK, `${path} holds a PEM private key`);
      assert.doesNotMatch(text, JWT, `${path} holds a JWT`);
    }
    assert.ok(!context.some((p) => p.startsWith('test/')), 'no tests');
  });
});

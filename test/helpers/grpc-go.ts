/**
 * The seed's grpc-go client (test/fixtures/grpc/go-client), built offline from Debian's
 * packages: `golang-go` and `golang-google-grpc-dev` (grpc-go 1.33.3, which has
 * credentials/sts) in GOPATH mode, no module download. .ci/run installs both.
 *
 * The binary is built once per source, Go toolchain and grpc-go version and cached under
 * the OS temp dir, so only the first run on a machine pays for the build (about 15 s on
 * a cold Go build cache).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const GO_CLIENT_DIR = fileURLToPath(new URL('../../../test/fixtures/grpc/go-client', import.meta.url));
/** Debian's GOPATH tree for -dev packages. */
export const DEBIAN_GOCODE = '/usr/share/gocode';
const GRPC_GO = join(DEBIAN_GOCODE, 'src/google.golang.org/grpc');
const CACHE_DIR = join(tmpdir(), 'sts-sidecar-grpc-go');

/** What is missing to build the client, in words a failing test can show; undefined when nothing is. */
export async function goClientPrerequisites(): Promise<string | undefined> {
  const missing: string[] = [];
  try {
    await execFileAsync('go', ['version']);
  } catch {
    missing.push('golang-go (the go command)');
  }
  if (!existsSync(join(GRPC_GO, 'credentials/sts/sts.go'))) missing.push(`golang-google-grpc-dev (${GRPC_GO}/credentials/sts)`);
  return missing.length === 0 ? undefined : `install the Debian packages .ci/run installs: ${missing.join(', ')}`;
}

/** GOPATH mode against Debian's tree only: nothing is fetched, nothing outside the temp dir written. */
function goEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: CACHE_DIR,
    GO111MODULE: 'off',
    GOPATH: `${join(CACHE_DIR, 'gopath')}:${DEBIAN_GOCODE}`,
    GOCACHE: join(CACHE_DIR, 'gocache'),
    GOFLAGS: '',
    GOPROXY: 'off',
    CGO_ENABLED: '0',
  };
}

let building: Promise<string> | undefined;

/** Path of the built client; builds it the first time (once per process, atomically on disk). */
export function buildGoClient(): Promise<string> {
  building ??= build().catch((err: unknown) => {
    building = undefined;
    throw err;
  });
  return building;
}

async function build(): Promise<string> {
  const problem = await goClientPrerequisites();
  if (problem) throw new Error(problem);
  const hash = createHash('sha256');
  for (const name of (await readdir(GO_CLIENT_DIR)).sort()) hash.update(name).update(await readFile(join(GO_CLIENT_DIR, name)));
  hash.update((await execFileAsync('go', ['version'], { env: goEnv() })).stdout);
  hash.update(await readFile(join(GRPC_GO, 'version.go')));
  const binary = join(CACHE_DIR, `go-client-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(binary)) return binary;
  await mkdir(CACHE_DIR, { recursive: true });
  // Built beside its final name and renamed: a concurrent test process never runs half a file.
  const partial = `${binary}.${process.pid}.tmp`;
  await execFileAsync('go', ['build', '-o', partial, '.'], { cwd: GO_CLIENT_DIR, env: goEnv(), timeout: 300_000 });
  await rename(partial, binary);
  return binary;
}

/** One line of the client's output per call (main.go's callResult). */
export interface GoCallResult {
  readonly ok: boolean;
  /** grpc-go's codes.Code name, e.g. `OK`, `Unauthenticated`. */
  readonly code: string;
  readonly message: string;
  /** The authorization metadata the server saw, echoed back. */
  readonly authorization?: string;
  readonly trailer?: string;
}

export interface GoClientRun {
  readonly calls: GoCallResult[];
  /** Set when the client could not start calling (credentials, dial): exit status 2. */
  readonly error?: string;
}

/** The seed's flags (see main.go); values are passed as `-name=value`. */
export interface GoClientFlags {
  readonly address: string;
  readonly stsaddress: string;
  readonly stsCredFile: string;
  readonly stsaudience?: string;
  readonly scope?: string;
  readonly usetls?: boolean;
  readonly cacert?: string;
  readonly servername?: string;
  readonly calls?: number;
}

export async function runGoClient(flags: GoClientFlags): Promise<GoClientRun> {
  const binary = await buildGoClient();
  const args = Object.entries(flags).map(([name, value]) => `-${name}=${String(value)}`);
  let stdout: string;
  try {
    // No proxy variables reach it: grpc-go would honour https_proxy for the gRPC dial.
    ({ stdout } = await execFileAsync(binary, args, { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, timeout: 60_000 }));
  } catch (err) {
    const failed = err as { code?: unknown; stdout?: string; stderr?: string };
    if (failed.code !== 2 || !failed.stdout) throw err;
    stdout = failed.stdout;
  }
  const lines = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const error = lines.find((l) => typeof l['error'] === 'string')?.['error'] as string | undefined;
  return { calls: lines.filter((l) => typeof l['ok'] === 'boolean') as unknown as GoCallResult[], ...(error !== undefined ? { error } : {}) };
}

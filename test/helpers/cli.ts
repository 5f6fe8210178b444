/**
 * Running the built `sts-sidecar` command as a user would: a child process, its exit code and
 * everything it printed. Killed after `timeoutMs` so a hung command fails its test.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** dist/src/cli/main.js, the package's bin. */
export const CLI_BIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCli(args: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * The smallest config `sts-sidecar run` serves traffic with: the seed's subject token, one STS,
 * one route (`walrus.internal` on the shared proxy listener), every listener on port 0.
 */
export function walrusRunConfig(stsTokenUrl: string, upstreamUrl: string): string {
  return [
    'proxy: { listen: "127.0.0.1:0" }',
    'admin: { listen: "127.0.0.1:0" }',
    'subjectToken: { value: iamtheeggman, type: "urn:ietf:params:oauth:token-type:access_token" }',
    `sts: { url: "${stsTokenUrl}" }`,
    'routes:',
    `  - { name: walrus, host: walrus.internal, upstream: "${upstreamUrl}" }`,
    '',
  ].join('\n');
}

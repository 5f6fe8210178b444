/**
 * The stack the endpoint tests run against: the reference STS trusting a workload
 * issuer, a projected-token-like subject token in a file, and a real sidecar whose
 * config the test completes. Plus a runner for the SDK stand-in app (sdk-client.ts).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createLocalJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { createWorkloadIssuer, startDevSts, type DevSts, type DevStsOptions } from '../../src/devsts/index.js';
import { startHarness, type SidecarHarness } from './harness.js';
import { tempDir, type TempDir } from './loopback.js';

const execFileAsync = promisify(execFile);

export const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';

export interface EndpointStack {
  readonly sts: DevSts;
  readonly harness: SidecarHarness;
  /** The pod's subject token (what the sidecar exchanges), also in `tokenFile`. */
  readonly podToken: string;
  readonly tokenFile: string;
  readonly dir: TempDir;
  /** Mints a token from the pod's issuer (which the STS trusts), e.g. a rotated pod token. */
  mint(sub?: string): Promise<string>;
  /** Verifies an access token against the reference STS's keys and returns its claims. */
  verify(token: string, audience?: string): Promise<JWTPayload>;
  close(): Promise<void>;
}

/** `configure` gets the STS and returns the rest of the config (routes, endpoints, ...). */
export async function startEndpointStack(
  configure: (sts: DevSts, tokenFile: string) => Record<string, unknown>,
  stsOptions: Partial<DevStsOptions> = {},
): Promise<EndpointStack> {
  const workload = createWorkloadIssuer();
  const sts = await startDevSts({ trustedIssuers: [{ issuer: workload.issuer, jwks: workload.jwks }], ...stsOptions });
  const dir = await tempDir('sts-sidecar-endpoints-');
  const podToken = await workload.mint({ sub: 'system:serviceaccount:shop:orders', aud: sts.issuer });
  const tokenFile = join(dir.path, 'token');
  await writeFile(tokenFile, podToken, { mode: 0o600 });
  let harness: SidecarHarness;
  try {
    harness = await startHarness({
      subjectToken: { file: tokenFile, type: JWT_TYPE, pollIntervalSeconds: 0.1 },
      sts: { url: sts.tokenUrl },
      ...configure(sts, tokenFile),
    });
  } catch (err) {
    await sts.close();
    await dir.cleanup();
    throw err;
  }
  const jwks = createLocalJWKSet(sts.publicJwks);
  return {
    sts,
    harness,
    podToken,
    tokenFile,
    dir,
    mint: (sub = 'system:serviceaccount:shop:orders') => workload.mint({ sub, aud: sts.issuer }),
    async verify(token, audience) {
      const { payload } = await jwtVerify(token, jwks, { issuer: sts.issuer, ...(audience ? { audience } : {}) });
      return payload;
    },
    async close() {
      await harness.close();
      await sts.close();
      await dir.cleanup();
    },
  };
}

const SDK_CLIENT = fileURLToPath(new URL('./sdk-client.js', import.meta.url));

/**
 * Runs the stand-in app with only PATH, a throwaway HOME (no gcloud or Azure CLI state)
 * and `env`, so nothing from the machine's environment reaches the SDKs.
 */
export async function runSdkClient(env: Record<string, string>, home: string, ...args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await execFileAsync(process.execPath, [SDK_CLIENT, ...args], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, ...env },
    timeout: 60_000,
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}


/**
 * Issue 12, the seed's flow path (1), with clients and servers no one here wrote:
 * grpc-go's own STS call credentials (credentials/sts, grpc-go 1.33.3 from Debian) ask
 * the sidecar's local token endpoint (RFC 8693) for a token, and call the seed's gRPC
 * server (grpc-js, TLS) that lets in only `authorization: Bearer iamthewalrus`. The
 * reference STS exchanges the sidecar's `iamtheeggman` for `iamthewalrus`, as the
 * seed's STS does.
 *
 * grpc-go facts this pins down: STS call credentials refuse a cleartext connection, and a
 * token is reused only while it has more than 300 s left (the seed STS's 60 s tokens are
 * fetched again for every call; an hour-long one once).
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDevSts, type DevSts } from '../src/devsts/index.js';
import { TOKEN_TYPE_ACCESS, parsedLogs, startHarness, type SidecarHarness } from './helpers/harness.js';
import { tempDir, type TempDir } from './helpers/loopback.js';
import { createTestPki } from './helpers/pki.js';
import { buildGoClient, runGoClient, type GoClientFlags } from './helpers/grpc-go.js';
import { SEED_AUTHORIZATION } from './helpers/grpc-proto.js';
import { startGrpcServer, type TestGrpcServer } from './helpers/grpc-server.js';

type Callers = 'pod-token' | 'loopback';

interface SeedStack {
  readonly sts: DevSts;
  readonly sidecar: SidecarHarness;
  /** The client's flags: the seed's, pointed at the sidecar's token endpoint. */
  readonly flags: GoClientFlags;
  /** Requests the sidecar's token endpoint answered so far. */
  endpointRequests(): number;
  close(): Promise<void>;
}

const pki = createTestPki('seed gRPC CA');
let dir: TempDir;
let server: TestGrpcServer;
/** `creds.txt` of the seed: the subject token the client reads, `iamtheeggman`. */
let credFile: string;
let caFile: string;

/**
 * The reference STS with the seed's one rule (subject `iamtheeggman`, issued token and
 * lifetime as given), a sidecar holding `iamtheeggman` with a token-only route for the
 * gRPC server, and its token endpoint. The seed's `-stsaudience` is the server's bare
 * address, exactly as the seed sets it; grpc-go sends it as `resource` too, which the
 * token endpoint accepts as a name (RFC 8693 section 2.1 would want an absolute URI).
 */
async function startSeedStack(callers: Callers, rule: { issuedToken?: string; lifetimeSeconds?: number } = {}): Promise<SeedStack> {
  const sts = await startDevSts({
    staticRules: [{ subjectToken: 'iamtheeggman', issuedToken: rule.issuedToken ?? 'iamthewalrus', lifetimeSeconds: rule.lifetimeSeconds ?? 60 }],
  });
  const audience = server.address;
  let sidecar: SidecarHarness;
  try {
    sidecar = await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      routes: [{ name: 'grpc', audience, lazy: true }],
      tokenEndpoint: { listen: '127.0.0.1:0', callers },
    });
  } catch (err) {
    await sts.close();
    throw err;
  }
  return {
    sts,
    sidecar,
    flags: {
      address: server.address,
      usetls: true,
      cacert: caFile,
      servername: 'localhost',
      stsaddress: `${sidecar.sidecar.endpointUrls.token!}/token`,
      stsaudience: audience,
      stsCredFile: credFile,
    },
    endpointRequests: () => parsedLogs(sidecar.logs).filter((l) => l['msg'] === 'endpoint request' && l['endpoint'] === 'token').length,
    async close() {
      await sidecar.close();
      await sts.close();
    },
  };
}

before(async () => {
  dir = await tempDir('sts-sidecar-grpc-go-');
  credFile = join(dir.path, 'creds.txt');
  await writeFile(credFile, 'iamtheeggman');
  caFile = join(dir.path, 'ca.pem');
  await writeFile(caFile, pki.ca.certPem);
  server = await startGrpcServer({ tls: { cert: pki.server.certPem, key: pki.server.keyPem } });
  // The first run on a machine builds the client (about 15 s); later runs reuse the binary.
  await buildGoClient();
}, { timeout: 300_000 });

after(async () => {
  await server?.close();
  await dir?.cleanup();
});

for (const callers of ['pod-token', 'loopback'] as const) {
  describe(`grpc-go credentials/sts -> sidecar token endpoint (callers: ${callers}) -> seed gRPC server`, () => {
    let stack: SeedStack;
    before(async () => {
      stack = await startSeedStack(callers);
    });
    after(() => stack.close());

    test('the client gets iamthewalrus through its own STS credentials and every call is let in', async () => {
      const seen = server.calls.length;
      const run = await runGoClient({ ...stack.flags, calls: 3 });
      assert.equal(run.error, undefined);
      assert.deepEqual(
        run.calls.map((c) => [c.ok, c.code, c.message, c.authorization, c.trailer]),
        [0, 1, 2].map((i) => [true, 'OK', `call ${i}`, SEED_AUTHORIZATION, 'done']),
      );
      const calls = server.calls.slice(seen);
      assert.equal(calls.length, 3);
      assert.ok(calls.every((c) => c.metadata['authorization'] === SEED_AUTHORIZATION));
      // The seed STS's 60 s token is under grpc-go's 300 s floor, so each call asks again;
      // the sidecar answers from its cache: one exchange at the STS.
      assert.equal(stack.endpointRequests(), 3);
      assert.equal(stack.sts.stats.exchangesIssued, 1);
    });
  });
}

describe('grpc-go credentials/sts through the sidecar: what else a gRPC user meets', () => {
  test('a token with more than 300 s left is fetched once and reused by grpc-go for every call', async (t) => {
    const stack = await startSeedStack('pod-token', { lifetimeSeconds: 3600 });
    t.after(() => stack.close());
    const run = await runGoClient({ ...stack.flags, calls: 3 });
    assert.deepEqual(run.calls.map((c) => c.authorization), [SEED_AUTHORIZATION, SEED_AUTHORIZATION, SEED_AUTHORIZATION]);
    assert.equal(stack.endpointRequests(), 1);
  });

  test('the STS issues another token: the client presents it and the seed server answers UNAUTHENTICATED', async (t) => {
    const stack = await startSeedStack('pod-token', { issuedToken: 'iamthepaperback' });
    t.after(() => stack.close());
    const seen = server.calls.length;
    const run = await runGoClient(stack.flags);
    assert.equal(run.error, undefined);
    assert.equal(run.calls.length, 1);
    assert.equal(run.calls[0]!.ok, false);
    assert.equal(run.calls[0]!.code, 'Unauthenticated');
    assert.equal(server.calls.slice(seen).at(0)?.metadata['authorization'], 'Bearer iamthepaperback');
  });

  test('callers: pod-token refuses a client whose subject token is not the pod\'s; the call never reaches the server', async (t) => {
    const stack = await startSeedStack('pod-token');
    t.after(() => stack.close());
    const otherCreds = join(dir.path, 'other-creds.txt');
    await writeFile(otherCreds, 'iamnottheeggman');
    const seen = server.calls.length;
    const run = await runGoClient({ ...stack.flags, stsCredFile: otherCreds });
    assert.equal(run.calls[0]!.ok, false);
    // grpc-go turns a failed exchange into UNAUTHENTICATED and quotes the STS's answer.
    assert.equal(run.calls[0]!.code, 'Unauthenticated');
    assert.match(run.calls[0]!.message, /http status 400.*invalid_grant/);
    assert.equal(server.calls.length, seen);
    assert.equal(stack.sts.stats.tokenRequests, 0, 'the sidecar exchanged nothing for a refused caller');
  });

  test('grpc-go refuses STS call credentials over a cleartext connection: no token is even asked for', async (t) => {
    const stack = await startSeedStack('loopback');
    t.after(() => stack.close());
    const h2c = await startGrpcServer();
    t.after(() => h2c.close());
    const run = await runGoClient({ ...stack.flags, address: h2c.address, usetls: false });
    assert.match(run.error ?? '', /grpc\.Dial: .*transport level security/);
    assert.equal(stack.endpointRequests(), 0);
    assert.equal(h2c.calls.length, 0);
  });
});

/**
 * The demo's gRPC step (issue 12): a tiny gRPC upstream that lets a call in only with a
 * token the reference STS minted for its audience and bound to the caller's certificate
 * (RFC 8705 section 3), and a client call to it. No .proto file (tsc copies only .ts
 * into dist): one unary method, `/stssidecar.demo.Greeter/Hello`, whose messages are JSON,
 * serialised by hand as grpc-js allows for any service definition.
 *
 * @grpc/grpc-js is a development dependency: the demo runs from a checkout, where it is
 * installed. It is loaded on demand so a packaged install (no devDependencies) still runs
 * the rest of the demo; loadGrpc() answers undefined there.
 */
import type * as GrpcJs from '@grpc/grpc-js';
import { BoundTokenError } from '../errors.js';
import { verifyBoundToken, type BoundTokenKeys } from '../resource/verify-bound-token.js';

export type Grpc = typeof GrpcJs;

/** @grpc/grpc-js when it is installed, else undefined. */
export async function loadGrpc(): Promise<Grpc | undefined> {
  try {
    return await import('@grpc/grpc-js');
  } catch {
    return undefined;
  }
}

export interface HelloRequest {
  readonly name: string;
}

export interface HelloReply {
  readonly message: string;
  /** Claims of the token the upstream accepted (never the token). */
  readonly token: { readonly sub: unknown; readonly aud: unknown; readonly cnf?: unknown };
}

const json = {
  serialize: (value: unknown): Buffer => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer): unknown => JSON.parse(bytes.toString('utf8')),
};

export const HELLO_PATH = '/stssidecar.demo.Greeter/Hello';

/** The service definition grpc-js's addService takes, written out instead of generated. */
const GREETER_SERVICE = {
  Hello: {
    path: HELLO_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize as (bytes: Buffer) => HelloRequest,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize as (bytes: Buffer) => HelloReply,
  },
} as const;

export interface DemoGrpcUpstreamOptions {
  readonly jwks: BoundTokenKeys;
  readonly issuer: string;
  readonly audience: string;
  readonly port?: number;
  /** PEM server certificate and key, and the CA client certificates must chain to. */
  readonly tls: { readonly cert: string; readonly key: string; readonly ca: string };
}

export interface DemoGrpcUpstream {
  /** `127.0.0.1:PORT`. */
  readonly address: string;
  close(): Promise<void>;
}

/** The gRPC upstream: TLS (ALPN h2), a client certificate required, a bound token checked against it. */
export async function startDemoGrpcUpstream(grpc: Grpc, options: DemoGrpcUpstreamOptions): Promise<DemoGrpcUpstream> {
  const server = new grpc.Server();
  server.addService(GREETER_SERVICE, {
    Hello(call: GrpcJs.ServerUnaryCall<HelloRequest, HelloReply>, callback: GrpcJs.sendUnaryData<HelloReply>) {
      const header = call.metadata.get('authorization')[0];
      const match = typeof header === 'string' ? /^Bearer ([^\s]+)$/i.exec(header) : null;
      const refuse = (details: string) => callback({ code: grpc.status.UNAUTHENTICATED, details });
      if (!match) return refuse('a bearer token is required');
      verifyBoundToken(match[1]!, call.getAuthContext()?.sslPeerCertificate, { jwks: options.jwks, issuer: options.issuer, audience: options.audience }).then(
        (payload) =>
          callback(null, {
            message: `hello ${call.request.name}, from the demo gRPC upstream: your token was accepted`,
            token: { sub: payload.sub, aud: payload.aud, ...(payload.cnf ? { cnf: payload.cnf } : {}) },
          }),
        (err: unknown) => (err instanceof BoundTokenError ? refuse(`${err.code}: ${err.message}`) : callback({ code: grpc.status.INTERNAL, details: 'verification failed' })),
      );
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(Buffer.from(options.tls.ca), [{ private_key: Buffer.from(options.tls.key), cert_chain: Buffer.from(options.tls.cert) }], true);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${options.port ?? 0}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

export type HelloOutcome =
  | { readonly ok: true; readonly reply: HelloReply }
  | { readonly ok: false; readonly status: string; readonly details: string; readonly sidecarError: string | undefined };

export interface HelloCall {
  /** `host:port` to dial. */
  readonly target: string;
  /** TLS with these PEMs, checking the server's certificate for `serverName`; h2c with prior knowledge when absent. */
  readonly tls?: { readonly ca: string; readonly cert: string; readonly key: string; readonly serverName: string };
  readonly deadlineMs?: number;
}

/** One Hello call; a failure is an outcome (status name, details, x-sts-sidecar-error), never a throw. */
export function callHello(grpc: Grpc, call: HelloCall, name: string): Promise<HelloOutcome> {
  const credentials = call.tls
    ? grpc.credentials.createSsl(Buffer.from(call.tls.ca), Buffer.from(call.tls.key), Buffer.from(call.tls.cert))
    : grpc.credentials.createInsecure();
  // A name, not the IP of the target, as the TLS server name (RFC 6066 section 3 allows no IP address).
  const client = new grpc.Client(call.target, credentials, call.tls ? { 'grpc.ssl_target_name_override': call.tls.serverName } : {});
  const { Hello } = GREETER_SERVICE;
  return new Promise<HelloOutcome>((resolve) => {
    client.makeUnaryRequest(
      Hello.path,
      Hello.requestSerialize,
      Hello.responseDeserialize,
      { name },
      new grpc.Metadata(),
      { deadline: Date.now() + (call.deadlineMs ?? 5000) },
      (err, reply) => {
        if (!err) return resolve({ ok: true, reply: reply! });
        const sidecarError = err.metadata?.get('x-sts-sidecar-error')[0];
        resolve({ ok: false, status: grpc.status[err.code] ?? String(err.code), details: err.details.trim(), sidecarError: typeof sidecarError === 'string' ? sidecarError : undefined });
      },
    );
  }).finally(() => client.close());
}

/**
 * Step 6: the gRPC app (no token, h2c) through the sidecar's "greeter" route, and the same
 * call made directly over alice's certificate but without a token, which the upstream refuses.
 */
export async function grpcDemoStep(
  grpc: Grpc,
  upstream: DemoGrpcUpstream,
  routeUrl: string | undefined,
  alice: { readonly ca: string; readonly cert: string; readonly key: string },
  out: (line?: string) => void,
): Promise<{ ok: boolean }> {
  const describe = (o: HelloOutcome) =>
    o.ok ? `OK ${JSON.stringify(o.reply)}` : `${o.status}: ${o.details}${o.sidecarError ? ` (x-sts-sidecar-error ${o.sidecarError})` : ''}`;
  const direct = await callHello(grpc, { target: upstream.address, tls: { ...alice, serverName: 'orders.demo' } }, 'app');
  out(`6. gRPC app -> gRPC upstream directly (alice's certificate, no token): ${describe(direct)}`);
  if (!routeUrl) {
    out('   gRPC app -> sidecar: the "greeter" route has no listener.');
    return { ok: false };
  }
  const proxied = await callHello(grpc, { target: new URL(routeUrl).host }, 'app');
  out(`   gRPC app -> sidecar ${routeUrl} (h2c) -> gRPC upstream (TLS, h2), token added: ${describe(proxied)}`);
  return { ok: proxied.ok && !direct.ok };
}

/**
 * A grpc-js client of the Echo service (echo.proto) with each call type as a promise
 * that resolves with the value(s), the response headers and the trailers, or rejects
 * with grpc-js's own ServiceError (code, details, trailers). The client is grpc-js's,
 * unmodified: what it sends and accepts is what a real gRPC app does.
 */
import * as grpc from '@grpc/grpc-js';
import { MESSAGE_SIZE_OPTIONS, echoServiceClient, type EchoMethod, type EchoReply, type EchoRequest } from './grpc-proto.js';

export interface GrpcClientOptions {
  /** TLS (ALPN h2) trusting `ca`; h2c with prior knowledge when absent. */
  readonly tls?: { readonly ca: string; readonly cert?: string; readonly key?: string; readonly serverName?: string };
  /** Sent as `authorization` metadata on every call (e.g. `Bearer iamthewalrus`). */
  readonly authorization?: string;
  /** Extra channel options, e.g. `grpc.enable_http_proxy` or `grpc.default_authority`. */
  readonly channelOptions?: grpc.ChannelOptions;
}

export interface EchoCallOptions {
  readonly metadata?: Readonly<Record<string, string | Buffer>>;
  /** Deadline from now; grpc-js sends it as `grpc-timeout`. */
  readonly deadlineMs?: number;
  /** Aborting cancels the call (grpc-js sends RST_STREAM CANCEL). */
  readonly signal?: AbortSignal;
  /** Streaming replies: called as each one arrives (e.g. to cancel mid-stream). */
  readonly onReply?: (reply: EchoReply) => void;
}

export interface CallResult<T> {
  readonly value: T;
  readonly headers: grpc.Metadata;
  readonly trailers: grpc.Metadata;
}

export interface EchoClient {
  unary(req: EchoRequest, opts?: EchoCallOptions): Promise<CallResult<EchoReply>>;
  serverStream(req: EchoRequest, opts?: EchoCallOptions): Promise<CallResult<EchoReply[]>>;
  clientStream(reqs: readonly EchoRequest[], opts?: EchoCallOptions): Promise<CallResult<EchoReply>>;
  /** Ping-pong: each request is written only after the reply to the previous one arrived. */
  bidi(reqs: readonly EchoRequest[], opts?: EchoCallOptions): Promise<CallResult<EchoReply[]>>;
  /** The underlying grpc-js client, for calls the helpers do not shape. */
  readonly raw: grpc.Client;
  close(): void;
}

export function createEchoClient(address: string, options: GrpcClientOptions = {}): EchoClient {
  const Echo = echoServiceClient();
  const tls = options.tls;
  const credentials = tls
    ? grpc.credentials.createSsl(Buffer.from(tls.ca), tls.key ? Buffer.from(tls.key) : null, tls.cert ? Buffer.from(tls.cert) : null)
    : grpc.credentials.createInsecure();
  const raw = new Echo(address, credentials, {
    ...MESSAGE_SIZE_OPTIONS,
    ...(tls?.serverName ? { 'grpc.ssl_target_name_override': tls.serverName } : {}),
    ...options.channelOptions,
  });
  const method = (name: EchoMethod) => {
    const def = Echo.service[name]!;
    return {
      path: def.path,
      serialize: def.requestSerialize as (value: EchoRequest) => Buffer,
      deserialize: def.responseDeserialize as (value: Buffer) => EchoReply,
    };
  };
  const metadataOf = (opts: EchoCallOptions): grpc.Metadata => {
    const md = new grpc.Metadata();
    if (options.authorization !== undefined) md.set('authorization', options.authorization);
    for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
    return md;
  };
  const callOptions = (opts: EchoCallOptions): grpc.CallOptions => (opts.deadlineMs === undefined ? {} : { deadline: Date.now() + opts.deadlineMs });

  return {
    raw,
    close: () => raw.close(),

    unary(req, opts = {}) {
      const m = method('Unary');
      return settle<EchoReply>((done) => raw.makeUnaryRequest(m.path, m.serialize, m.deserialize, req, metadataOf(opts), callOptions(opts), done), opts);
    },

    clientStream(reqs, opts = {}) {
      const m = method('ClientStream');
      return settle<EchoReply>((done) => {
        const call = raw.makeClientStreamRequest(m.path, m.serialize, m.deserialize, metadataOf(opts), callOptions(opts), done);
        for (const req of reqs) call.write(req);
        call.end();
        return call;
      }, opts);
    },

    serverStream(req, opts = {}) {
      const m = method('ServerStream');
      return settle<EchoReply[]>((done) => {
        const call = raw.makeServerStreamRequest(m.path, m.serialize, m.deserialize, req, metadataOf(opts), callOptions(opts));
        const replies: EchoReply[] = [];
        call.on('data', (r: EchoReply) => {
          replies.push(r);
          opts.onReply?.(r);
        });
        call.on('error', (err: grpc.ServiceError) => done(err));
        call.on('end', () => done(null, replies));
        return call;
      }, opts);
    },

    bidi(reqs, opts = {}) {
      const m = method('Bidi');
      return settle<EchoReply[]>((done) => {
        const call = raw.makeBidiStreamRequest(m.path, m.serialize, m.deserialize, metadataOf(opts), callOptions(opts));
        const replies: EchoReply[] = [];
        const next = () => (replies.length < reqs.length ? call.write(reqs[replies.length]!) : call.end());
        call.on('data', (r: EchoReply) => {
          replies.push(r);
          opts.onReply?.(r);
          next();
        });
        call.on('error', (err: grpc.ServiceError) => done(err));
        call.on('status', (s: grpc.StatusObject) => s.code === grpc.status.OK && done(null, replies));
        next();
        return call;
      }, opts);
    },
  };
}

type Done<T> = (err: grpc.ServiceError | null, value?: T) => void;

/**
 * Runs one call and gathers its headers (the 'metadata' event) and trailers (the
 * 'status' event), settling once both the outcome (callback, 'end' or 'error') and the
 * status are in, whichever order grpc-js delivers them; wires `signal` to `call.cancel()`.
 */
function settle<T>(start: (done: Done<T>) => grpc.Call, opts: EchoCallOptions): Promise<CallResult<T>> {
  return new Promise((resolve, reject) => {
    let outcome: { err: grpc.ServiceError | null; value?: T } | undefined;
    let status: grpc.StatusObject | undefined;
    let headers = new grpc.Metadata();
    const finish = () => {
      if (status === undefined || (outcome === undefined && status.code === grpc.status.OK)) return;
      opts.signal?.removeEventListener('abort', cancel);
      if (status.code !== grpc.status.OK) return reject(outcome?.err ?? Object.assign(new Error(status.details), status));
      resolve({ value: outcome!.value as T, headers, trailers: status.metadata });
    };
    const call = start((err, value) => {
      outcome ??= { err, value };
      finish();
    });
    call.on('metadata', (md: grpc.Metadata) => (headers = md));
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      finish();
    });
    const cancel = () => call.cancel();
    if (opts.signal?.aborted) cancel();
    else opts.signal?.addEventListener('abort', cancel, { once: true });
  });
}

/** The ServiceError a call failed with; throws when the call succeeded. */
export async function callError(call: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await call;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded; a gRPC error was expected');
}

/** The variables grpc-js consults for a proxy (grpc_proxy first, then https_proxy, http_proxy) and its exceptions. */
const PROXY_VARIABLES = ['grpc_proxy', 'https_proxy', 'http_proxy', 'no_grpc_proxy', 'no_proxy'] as const;

/**
 * A client of `target` built as an app started with `http_proxy=<proxyUrl>` builds it.
 * grpc-js reads the proxy variables once, when the channel is made (its http_proxy.ts
 * mapProxyName), then dials the proxy and sends `CONNECT target` for every connection,
 * cleartext targets included, and speaks h2c or TLS inside the tunnel. The variables are
 * set only while the channel is made (synchronously, so nothing else in the process sees
 * them) and restored after.
 */
export function createEchoClientThroughProxyEnv(target: string, proxyUrl: string, options: GrpcClientOptions = {}): EchoClient {
  const saved = PROXY_VARIABLES.map((name) => [name, process.env[name]] as const);
  for (const name of PROXY_VARIABLES) delete process.env[name];
  process.env['http_proxy'] = proxyUrl;
  try {
    return createEchoClient(target, options);
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

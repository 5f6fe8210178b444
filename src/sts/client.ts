/**
 * The RFC 8693 client: one POST per exchange, with a deadline, a response-size cap
 * and errors mapped onto stable codes. It knows nothing of inbound HTTP or caching.
 */
import type { Dispatcher } from 'undici';
import { Agent, request } from '../http/undici.js';
import { clientConnectOptions, type PeerTlsSettings } from '../tls/client-tls.js';
import type { IdentityGeneration } from '../tls/identity.js';
import { PerIdentity } from '../tls/per-identity.js';
import { StsError } from '../errors.js';
import { createRedactor, type Redactor } from '../log/redact.js';
import type { ClientAuth } from './client-auth.js';
import { createStsDpop } from './dpop-request.js';
import { encodeTokenRequest, type ExchangeParams, type JsonFieldNames, type RequestEncoding } from './exchange-request.js';
import { processExchangeResponse, type IssuedToken } from './exchange-response.js';

export interface StsClientOptions {
  readonly url: URL;
  readonly encoding: RequestEncoding;
  readonly jsonFieldNames?: JsonFieldNames;
  readonly clientAuth: ClientAuth;
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
  /** Trust (when given, only these CAs), SNI name, and whether to present the workload certificate. */
  readonly tls?: Partial<PeerTlsSettings>;
  /** How long a superseded identity's connections stay usable after a rotation. */
  readonly rotationGraceMs?: number;
  /** The sidecar's redactor: scrubs the STS's error text before it enters an error (issue 10 item 15). */
  readonly redactor?: Redactor;
}

export interface StsClient {
  /**
   * One exchange. With an identity, the request travels on a connection presenting that
   * generation's certificate (mTLS, RFC 8705 2 and 3), so the STS binds the token to it.
   */
  exchange(params: ExchangeParams, identity?: IdentityGeneration): Promise<IssuedToken>;
  close(): Promise<void>;
}

/**
 * One exchange as the token cache calls it, and as decorators (sts/certificate-binding.ts)
 * wrap it. `route` names the route the token is for, for a decorator's metrics and logs.
 */
export type Exchange = (params: ExchangeParams, identity: IdentityGeneration | undefined, route: string) => Promise<IssuedToken>;

export function createStsClient(options: StsClientOptions): StsClient {
  const peer: PeerTlsSettings = { clientCertificate: true, ...options.tls };
  const agents = new PerIdentity(
    (identity) => new Agent({ connect: clientConnectOptions(identity, peer), keepAliveTimeout: 30_000, connections: 4 }),
    options.rotationGraceMs ?? options.timeoutMs + 5_000,
  );
  const target = options.url.href;
  const where = `${options.url.origin}${options.url.pathname}`;
  const redactor = options.redactor ?? createRedactor();

  const dpop = createStsDpop(target);

  async function exchange(params: ExchangeParams, identity?: IdentityGeneration): Promise<IssuedToken> {
    const dispatcher = agents.get(identity);
    // One deadline for connect, headers and body, across a nonce retry too: an STS that never
    // answers must not hold a key's refresh forever.
    const deadline = AbortSignal.timeout(options.timeoutMs);
    for (let attempt = 1; ; attempt++) {
      // Encoded per attempt: a client assertion's jti must not be sent twice (RFC 7523 3 item 7).
      const { headers, body } = await encodeTokenRequest(params, options.encoding, options.clientAuth, options.jsonFieldNames);
      if (params.dpop) headers['dpop'] = await dpop.proof(params.dpop.key);
      const requestedAt = Date.now();
      let response: Dispatcher.ResponseData;
      try {
        response = await request(target, { method: 'POST', headers, body, dispatcher, signal: deadline });
      } catch (err) {
        throw transportError(err, deadline, where, options.timeoutMs);
      }
      const text = await readLimited(response, options.maxResponseBytes, deadline, where, options.timeoutMs);
      if (params.dpop && dpop.retryWithNonce(response.statusCode, response.headers, text) && attempt === 1) continue;
      // The secrets this request carried are scrubbed even if they rotated out of the registry meanwhile.
      const sent = [params.subjectToken, params.actorToken, sentBasicCredentials(headers['authorization'])];
      return processExchangeResponse(response.statusCode, text, requestedAt, (t, max) => redactor.scrub(t, max, sent), { dpop: params.dpop !== undefined });
    }
  }

  return {
    exchange,
    async close() {
      await agents.close();
    },
  };
}

/** RFC 6749 2.3.1: the `id:secret` pair inside a Basic header, so its encoded forms are scrubbed too. */
function sentBasicCredentials(authorization: string | undefined): string | undefined {
  const match = /^Basic (.+)$/i.exec(authorization ?? '');
  return match ? Buffer.from(match[1]!, 'base64').toString('utf8') : undefined;
}

async function readLimited(
  response: Dispatcher.ResponseData,
  limit: number,
  deadline: AbortSignal,
  where: string,
  timeoutMs: number,
): Promise<string> {
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    response.body.destroy();
    throw new StsError('ERR_STS_RESPONSE_TOO_LARGE', `STS reply from ${where} is ${declared} bytes, over the ${limit}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        response.body.destroy();
        throw new StsError('ERR_STS_RESPONSE_TOO_LARGE', `STS reply from ${where} exceeded the ${limit}-byte limit`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof StsError) throw err;
    throw transportError(err, deadline, where, timeoutMs);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function transportError(err: unknown, deadline: AbortSignal, where: string, timeoutMs: number): StsError {
  if (deadline.aborted) {
    return new StsError('ERR_STS_TIMEOUT', `STS at ${where} did not answer within ${timeoutMs} ms`, { cause: err });
  }
  const code = (err as { code?: string }).code ?? (err as Error).name;
  return new StsError('ERR_STS_UNREACHABLE', `STS at ${where} unreachable: ${code}`, { cause: err });
}

/**
 * The one stand-in RFC 8693 endpoint of the tests: a loopback http(s) server that records
 * every request it received (form, raw body, headers, client certificate over mTLS) and
 * answers as the test says: tokens, OAuth errors (RFC 6749 section 5.2), delays, outages and
 * odd bodies, or a hand-written answer. Tests of the STS protocol itself use the reference
 * STS in src/devsts.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { readBody, startHttpServer, type StartServerOptions } from './loopback.js';
import { sleep } from './eventually.js';

const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** One request as the STS received it. */
export interface StsRequest {
  /** 1 for the first request this STS received. */
  readonly nth: number;
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The body parsed as a form (empty for a JSON body). */
  readonly form: URLSearchParams;
  /** Over https with `requestCert`: the client's certificate (undefined when it sent none). */
  readonly clientCertificate: PeerCertificate | undefined;
}

/** Writes the answer to one request; may call other answers (e.g. `issueToken`) to fall back. */
export type StsAnswer = (res: ServerResponse, request: StsRequest, sts: FakeSts) => void | Promise<void>;

/**
 * up: a valid reply; down-503: HTTP 503 text; down-reset: connection reset;
 * not-json: 200 with HTML; no-access-token: 200 JSON without access_token;
 * huge: 200 with an 8 MiB JSON body; hang: accepts and never answers.
 */
export type FakeStsMode = 'up' | 'down-503' | 'down-reset' | 'not-json' | 'no-access-token' | 'huge' | 'hang';

export interface FakeStsOptions {
  readonly delayMs?: number;
  readonly lifetimeSeconds?: number;
  /** Issued tokens are `<prefix>-<n>-xxx…` (default prefix: issued). */
  readonly prefix?: string;
  readonly makeToken?: FakeSts['makeToken'];
  readonly answer?: StsAnswer;
  /** Speak https (add `requestCert` to record client certificates). */
  readonly tls?: StartServerOptions['tls'];
}

export interface FakeSts {
  /** Origin without a trailing slash. */
  readonly url: string;
  /** `<url>/token`. */
  readonly tokenUrl: string;
  /** Exchanges answered with a token by `issueToken`. */
  readonly issued: string[];
  /** Every request received, parsed form parameters. */
  readonly requests: URLSearchParams[];
  /** Every request received, whole. */
  readonly received: StsRequest[];
  /** When each issued token expires (epoch ms), by token. */
  readonly expiry: Map<string, number>;
  /** The canned behaviour, used unless `answer` is set. */
  mode: FakeStsMode;
  /** A hand-written answer; takes precedence over `mode`. */
  answer: StsAnswer | undefined;
  /** Wait before answering (not before a reset or a hang). */
  delayMs: number;
  lifetimeSeconds: number;
  readonly prefix: string;
  /** Builds the n-th issued token (default: an opaque `<prefix>-n-xxx` string). */
  makeToken: ((n: number, request: StsRequest) => string) | undefined;
  close(): Promise<void>;
}

/** A JSON reply; a string body is sent as it is (for bodies that are not valid JSON). */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): StsAnswer {
  return (res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };
}

/** An RFC 6749 section 5.2 error response. */
export function oauthError(error: string, description?: string, status = 400, headers: Record<string, string> = {}): StsAnswer {
  return json(status, description === undefined ? { error } : { error, error_description: description }, headers);
}

/** The successful exchange: the next token from `makeToken`/`prefix`, valid for `lifetimeSeconds`. */
export const issueToken: StsAnswer = (res, request, sts) => {
  const n = sts.issued.length + 1;
  const token = sts.makeToken?.(n, request) ?? `${sts.prefix}-${n}-${'x'.repeat(24)}`;
  sts.issued.push(token);
  sts.expiry.set(token, Date.now() + sts.lifetimeSeconds * 1000);
  json(200, { access_token: token, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: sts.lifetimeSeconds })(res, request, sts);
};

/** Resets the connection without an answer. */
export const reset: StsAnswer = (res) => void res.socket?.destroy();
/** Accepts and never answers. */
export const hang: StsAnswer = () => {};

/** Passes each request on to another STS (say the reference STS), so this one only records. */
export function forwardTo(origin: string): StsAnswer {
  return async (res, request) => {
    const reply = await fetch(`${origin}${request.path ?? '/'}`, {
      method: 'POST',
      headers: { 'content-type': String(request.headers['content-type']) },
      body: request.body,
    });
    res.writeHead(reply.status, { 'content-type': reply.headers.get('content-type') ?? 'application/octet-stream' });
    res.end(Buffer.from(await reply.arrayBuffer()));
  };
}

const MODES: Record<FakeStsMode, StsAnswer> = {
  up: issueToken,
  'down-503': (res) => {
    res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('unavailable');
  },
  'down-reset': reset,
  'not-json': (res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html>login page</html>');
  },
  'no-access-token': json(200, { issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: 60 }),
  huge: json(200, `{"access_token":"${'a'.repeat(8 * 1024 * 1024)}","issued_token_type":"x","token_type":"Bearer","expires_in":60}`),
  hang,
};

export async function startFakeSts(options: FakeStsOptions = {}): Promise<FakeSts> {
  let sts: FakeSts | undefined;
  const server = await startHttpServer(
    (req, res) => {
      (async () => {
        const body = await readBody(req).then((b) => b.toString('utf8'), () => undefined);
        if (body === undefined) return; // the body never completed (the peer went away): nothing to answer
        const socket = req.socket as Partial<TLSSocket>;
        const certificate = socket.encrypted ? socket.getPeerCertificate?.() : undefined;
        const request: StsRequest = {
          nth: sts!.received.length + 1,
          method: req.method,
          path: req.url,
          headers: req.headers,
          body,
          form: new URLSearchParams(body),
          clientCertificate: certificate && Object.keys(certificate).length > 0 ? certificate : undefined,
        };
        sts!.received.push(request);
        sts!.requests.push(request.form);
        const answer = sts!.answer ?? MODES[sts!.mode];
        if (answer !== reset && answer !== hang) await sleep(sts!.delayMs);
        await answer(res, request, sts!);
      })().catch(() => res.destroy()); // an answer that threw: the client sees a reset, the test its own failure
    },
    options.tls ? { tls: options.tls } : {},
  );
  sts = {
    url: server.url,
    tokenUrl: `${server.url}/token`,
    issued: [],
    requests: [],
    received: [],
    expiry: new Map(),
    mode: 'up',
    answer: options.answer,
    delayMs: options.delayMs ?? 0,
    lifetimeSeconds: options.lifetimeSeconds ?? 3600,
    prefix: options.prefix ?? 'issued',
    makeToken: options.makeToken,
    close: () => server.close(),
  };
  return sts;
}

/**
 * The one recording upstream of the tests: an http(s) server on loopback that keeps every
 * request it received (head and body) and answers through `respond`, by default with a JSON
 * echo of what arrived.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody, startHttpServer, type LoopbackServer, type StartServerOptions } from './loopback.js';

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly rawHeaders: string[];
  readonly body: Buffer;
}

export type UpstreamAnswer = (req: RecordedRequest, res: ServerResponse, socket: IncomingMessage['socket']) => void;

export interface TestUpstream extends LoopbackServer {
  readonly requests: RecordedRequest[];
}

export interface UpstreamOptions {
  readonly respond?: UpstreamAnswer;
  /** Speak https with these options. */
  readonly tls?: StartServerOptions['tls'];
}

/** 200 with `{ method, url, authorized }`: whether a token arrived, never the token. */
export const echoAuthorized: UpstreamAnswer = (req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ method: req.method, url: req.url, authorized: req.headers.authorization !== undefined }));
};

/** 200 with `{ url, authorization, tls }`: what a forward-proxy client should see arrive. */
export const echoAuthorization: UpstreamAnswer = (req, res, socket) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ url: req.url, authorization: req.headers.authorization ?? null, tls: 'encrypted' in socket }));
};

/** `respond` (or options) decides the answer; the default is `echoAuthorized`. */
export async function startUpstream(respondOrOptions: UpstreamAnswer | UpstreamOptions = {}): Promise<TestUpstream> {
  const options = typeof respondOrOptions === 'function' ? { respond: respondOrOptions } : respondOrOptions;
  const respond = options.respond ?? echoAuthorized;
  const requests: RecordedRequest[] = [];
  const server = await startHttpServer(
    (req, res) => {
      readBody(req).then(
        (body) => {
          const recorded: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body };
          requests.push(recorded);
          respond(recorded, res, req.socket);
        },
        () => {}, // the body never completed (the peer went away): nothing to record or answer
      );
    },
    options.tls ? { tls: options.tls } : {},
  );
  return Object.assign(server, { requests });
}

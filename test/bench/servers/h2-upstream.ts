/**
 * Bench child for the HTTP/2 rows (issue 12): one process serving two ports,
 *   - a gRPC server (grpc-js, h2c) with one unary method, `/bench.Echo/Unary`, raw bytes in
 *     and out, that answers UNAUTHENTICATED unless `authorization` is the expected bearer
 *     token (so every measured call proves the token was there);
 *   - an h2c server (node:http2) answering a small fixed body; ECHO_AUTH_PATH echoes the
 *     authorization it got, as the HTTP/1.1 upstream child does.
 */
import { createServer, type Http2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { BENCH_UNARY_PATH, ECHO_AUTH_PATH } from '../ipc.js';
import { serveChild } from './child.js';

export interface H2UpstreamOptions {
  /** The authorization a gRPC call must carry, e.g. `Bearer <token>`. */
  readonly authorization: string;
}

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };

serveChild<H2UpstreamOptions>(async ({ authorization }) => {
  const server = new grpc.Server();
  server.addService(
    { Unary: { path: BENCH_UNARY_PATH, requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize } },
    {
      Unary(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
        if (call.metadata.get('authorization')[0] !== authorization) return callback({ code: grpc.status.UNAUTHENTICATED, details: 'wrong token' });
        callback(null, call.request);
      },
    },
  );
  const grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );

  const body = Buffer.from('hello from the upstream\n');
  const sessions = new Set<Http2Session>();
  const h2c = createServer((req, res) => {
    if (req.url === ECHO_AUTH_PATH) {
      const text = JSON.stringify({ authorization: req.headers.authorization ?? null, clientCertSubject: null });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(text);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  h2c.on('session', (s: Http2Session) => (sessions.add(s), s.once('close', () => sessions.delete(s))));
  await new Promise<void>((resolve) => h2c.listen(0, '127.0.0.1', resolve));
  const h2cPort = (h2c.address() as AddressInfo).port;
  return {
    info: { grpcAddress: `127.0.0.1:${grpcPort}`, h2cUrl: `http://127.0.0.1:${h2cPort}`, pid: process.pid },
    close: async () => {
      server.forceShutdown();
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => h2c.close(() => resolve()));
    },
  };
});

/**
 * The webhook's HTTPS server: POST /mutate (AdmissionReview), GET /healthz. The API server
 * is its only client; it speaks TLS to a certificate its caBundle trusts (cert-manager's CA
 * injector fills that in, k8s/injector/). The certificate and key are re-read on rotation
 * and new handshakes use them (`setSecureContext`), as the sidecar's workload identity is.
 *
 * Bounds (../shared/STYLE.md habit 11): body size, header and whole-request time, and
 * connections; an oversized body is refused without being buffered.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from '../http/listen-address.js';
import { sendJson } from '../http/reply.js';
import type { Logger } from '../log/logger.js';
import { AdmissionReviewError, parseAdmissionReview, reviewPod } from './admission.js';
import type { WebhookConfig } from './webhook-config.js';

/** The rotating certificate: today's PEM pair, and a callback when it changes. */
export interface ServingCertificate {
  current(): { readonly certChainPem: string; readonly keyPem: string };
  onChange(listener: () => void): void;
}

export interface InjectorServer {
  readonly address: ListenAddress;
  close(): Promise<void>;
}

class BodyTooLarge extends Error {}

export async function startInjectorServer(options: {
  readonly listen: ListenAddress;
  readonly certificate: ServingCertificate;
  readonly config: WebhookConfig;
  readonly logger: Logger;
}): Promise<InjectorServer> {
  const { config, logger, certificate } = options;
  const tlsOptions = () => ({ cert: certificate.current().certChainPem, key: certificate.current().keyPem });
  const requestTimeout = config.limits.requestTimeoutSeconds * 1000;
  const server: Server = createServer({ ...tlsOptions(), minVersion: 'TLSv1.2', headersTimeout: requestTimeout, requestTimeout }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err }, 'admission review failed');
      sendJson(res, 500, { error: 'internal error' });
    });
  });
  server.maxConnections = config.limits.maxConnections;
  certificate.onChange(() => {
    server.setSecureContext(tlsOptions());
    logger.info('serving certificate rotated: new handshakes use it');
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) return sendJson(res, 200, { status: 'ok' });
    if (path !== '/mutate') return sendJson(res, 404, { error: 'not found', paths: ['/mutate', '/healthz'] });
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'method not allowed' }, { allow: 'POST' });
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, config.limits.maxBodyBytes)).toString('utf8'));
    } catch (err) {
      if (err instanceof BodyTooLarge) return sendJson(res, 413, { error: `body larger than ${config.limits.maxBodyBytes} bytes` }, { connection: 'close' });
      return sendJson(res, 400, { error: 'body is not JSON' });
    }
    let review;
    try {
      review = parseAdmissionReview(body);
    } catch (err) {
      if (err instanceof AdmissionReviewError) return sendJson(res, 400, { error: `not an AdmissionReview: ${err.message}` });
      throw err;
    }
    const { response, result } = reviewPod(review, config);
    // The pod itself is never logged: its env may hold secrets.
    logger.info(
      {
        uid: review.uid,
        namespace: review.namespace,
        dryRun: review.dryRun,
        result: result.kind,
        ...(result.kind === 'skip' ? { reason: result.reason } : {}),
        ...(result.kind === 'refuse' ? { annotation: result.refusal.annotation, problem: result.refusal.problem } : {}),
      },
      'admission review',
    );
    sendJson(res, 200, response);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  return {
    address: { host: bound.address, port: bound.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

/** The body up to `max` bytes; past it, stop reading and refuse (the connection is closed after the answer). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  if (Number(req.headers['content-length']) > max) return Promise.reject(new BodyTooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.pause();
        reject(new BodyTooLarge());
      } else chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new Error('request aborted'));
    });
  });
}

/**
 * What an upstream's 401 to an injected token does (issue 10 item 5), as one decorator of the
 * dispatch handler, the way undici composes its RetryHandler: the handler that streams the
 * answer to the app knows nothing of 401s.
 *
 * Every 401 to an injected token tells the token provider, so a refused token is not injected
 * again (a POST's 401 included). The provider answers whether a retry may use another token:
 * it drops and re-exchanges at most once per route and `limits.reexchangeAfter401IntervalSeconds`,
 * so an upstream that answers 401 to everything cannot turn each request into an exchange.
 * Only a request that is safe to send twice is retried, once: an idempotent method (RFC 9110
 * 9.2.2) without a body (the body has been streamed away). Any other 401 reaches the app,
 * as does an upgrade's (a handshake is never retried, but its 401 is reported).
 *
 * gRPC (issue 12) answers a refused credential with HTTP 200 and `grpc-status: 16`
 * (UNAUTHENTICATED), in the trailers or, for a Trailers-Only response, in the head (gRPC over
 * HTTP/2 protocol spec, "Responses"). It is reported the same way, under the same rate limit,
 * and never retried: a gRPC request body is a stream already sent.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ResponseController, UpgradeHandler } from './transport/types.js';

/** gRPC status code 16, UNAUTHENTICATED (grpc/doc/statuscodes.md). */
const GRPC_UNAUTHENTICATED = '16';

/** RFC 9110 9.2.2; TRACE is idempotent too but never forwarded with a token (issue 10 item 14). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/** True when a request may be sent again after a 401: idempotent, without a body, not a retry itself. */
export function retryableAfter401(method: string, hasBody: boolean, attempt: number): boolean {
  return attempt === 0 && !hasBody && IDEMPOTENT.has(method);
}

export interface Upstream401Policy {
  /** Reports the injected token as refused; true when a retry may be sent with another token. */
  invalidateToken(): boolean;
  /** Sends the request again with a fresh token (called once the 401 has been read to its end). */
  retryWithFreshToken(): void;
  /** Every final answer's head (a DPoP nonce may ride on any of them, RFC 9449 section 9). */
  responseHeaders?(headers: IncomingHttpHeaders): void;
  /** A 401 asking for a DPoP nonce (RFC 9449 section 9): the token is fine, the proof lacked the nonce. */
  nonceDemanded?(headers: IncomingHttpHeaders): boolean;
  /** Sends the request again, same token, a proof with the nonce (once the 401 has been read). */
  retryWithNonce?(): void;
}

export class Upstream401Handler implements UpgradeHandler {
  readonly #inner: UpgradeHandler;
  readonly #policy: Upstream401Policy;
  readonly #retryable: boolean;
  #retrying: 'token' | 'nonce' | undefined;
  #reported = false;

  constructor(inner: UpgradeHandler, policy: Upstream401Policy, retryable: boolean) {
    this.#inner = inner;
    this.#policy = policy;
    this.#retryable = retryable;
  }

  onRequestStart(controller: ResponseController, context: unknown): void {
    this.#inner.onRequestStart?.(controller, context);
  }

  onResponseStart(controller: ResponseController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode >= 200) this.#policy.responseHeaders?.(headers);
    if (statusCode === 401 && this.#policy.nonceDemanded?.(headers)) {
      // A nonce demand is no verdict on the token: it stays; a safe request is sent again.
      if (this.#retryable) {
        this.#retrying = 'nonce';
        return;
      }
      return this.#inner.onResponseStart?.(controller, statusCode, headers, statusMessage);
    }
    // invalidateToken() first: every 401 is reported, retryable or not.
    if (statusCode >= 200 && headers['grpc-status'] === GRPC_UNAUTHENTICATED) this.#reportGrpc();
    if (statusCode === 401 && this.#policy.invalidateToken() && this.#retryable) {
      // Read and drop this answer (keeps the connection reusable), then retry.
      this.#retrying = 'token';
      return;
    }
    this.#inner.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: ResponseController, chunk: Buffer): void {
    if (!this.#retrying) this.#inner.onResponseData?.(controller, chunk);
  }

  onResponseEnd(controller: ResponseController, trailers: IncomingHttpHeaders): void {
    if (this.#retrying === 'nonce') return this.#policy.retryWithNonce!();
    if (this.#retrying) return this.#policy.retryWithFreshToken();
    if (trailers['grpc-status'] === GRPC_UNAUTHENTICATED) this.#reportGrpc();
    this.#inner.onResponseEnd?.(controller, trailers);
  }

  /** Once per exchange: a Trailers-Only answer carries its status in the head alone. */
  #reportGrpc(): void {
    if (this.#reported) return;
    this.#reported = true;
    this.#policy.invalidateToken();
  }

  onResponseError(controller: ResponseController, error: Error): void {
    this.#inner.onResponseError?.(controller, error);
  }

  onSwitchingProtocols(controller: ResponseController, statusCode: number, rawHeaders: readonly string[], socket: Duplex, head: Buffer, statusMessage?: string): void {
    this.#inner.onSwitchingProtocols?.(controller, statusCode, rawHeaders, socket, head, statusMessage);
  }
}

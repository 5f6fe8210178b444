/**
 * The stages of the request pipeline (issue 11 item 3), decided once for every way a request
 * enters: reverse, a route's own listener, absolute-form, inside a CONNECT tunnel, intercepted
 * TLS, and upgrades on each. A resolver chose the route; from there:
 *
 *   method policy (TRACE) -> injection (replaceExisting, a token from the provider) ->
 *   header policy -> the 401 policy as a handler decorator -> the route's transport ->
 *   relay -> one recorded outcome.
 *
 * A subclass supplies only what differs between a request and an upgrade: how the app is
 * answered, which transport call carries it, and when the outcome is known.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { CachedToken } from '../cache/token-provider.js';
import { demandsNonce } from '../dpop/nonces.js';
import { createDpopProof } from '../dpop/proof.js';
import { SidecarError, TokenUnavailableError } from '../errors.js';
import type { ProxyContext, ProxyOutcome, ProxyRoute } from './context.js';
import type { InboundRequest } from './inbound.js';
import { recordOutcome, warnThrottled } from './outcome.js';
import { acceptsTrailers, hasBody, keepsOwnCredential, refusedMethod, requestTrailers, upstreamRequestHeaders } from './policy.js';
import type { OutboundRequest, UpgradeHandler } from './transport/types.js';
import { retryableAfter401, Upstream401Handler, type Upstream401Policy } from './upstream-401.js';

export abstract class Exchange implements Upstream401Policy {
  protected readonly route: ProxyRoute;
  protected readonly req: InboundRequest;
  protected readonly ctx: ProxyContext;
  readonly #started = performance.now();
  readonly #upgrade: boolean;
  #token: CachedToken | undefined;
  #attempt = 0;
  #recorded = false;

  protected constructor(route: ProxyRoute, req: InboundRequest, ctx: ProxyContext, upgrade: boolean) {
    this.route = route;
    this.req = req;
    this.ctx = ctx;
    this.#upgrade = upgrade;
  }

  /** True once the app went away: nothing is sent, nothing more is relayed. */
  protected abstract get gone(): boolean;
  /** The sidecar's own answer to the app (a SidecarError as JSON, or a cut when too late for one). */
  protected abstract answer(err: SidecarError): void;
  /** Hands the built request to the route's transport, the answer to `handler`. */
  protected abstract send(request: OutboundRequest, handler: UpgradeHandler): void;
  /** The handler that relays the upstream's answer to the app (the exchange itself). */
  protected abstract get relay(): UpgradeHandler;

  start(): void {
    const refused = refusedMethod(this.req.method);
    if (refused) return this.fail(refused, this.#upgrade ? 'upgrade refused' : 'request refused');
    if (keepsOwnCredential(this.route, this.req)) this.#forward(undefined);
    else this.#withToken();
  }

  #withToken(): void {
    this.ctx.tokens.getToken(this.route.name).then(
      (token) => (token.dpop ? this.#withProof(token) : this.#forward(token)),
      (err: unknown) =>
        this.fail(err instanceof SidecarError ? err : new TokenUnavailableError(this.route.name, err), this.#upgrade ? 'upgrade refused' : 'request refused'),
    );
  }

  /**
   * RFC 9449 section 7.1: a DPoP-bound token goes with a fresh proof of its key for this
   * request: `htm` its method, `htu` the upstream URL it is sent to (section 4.2 drops query
   * and fragment), `ath` the token's hash, and the origin's last nonce (section 9).
   */
  #withProof(token: CachedToken): void {
    const { route, req } = this;
    const url = route.upstream.origin + route.upstream.target(req.url ?? '/');
    createDpopProof(token.dpop!, { method: req.method ?? 'GET', url, accessToken: token.accessToken, nonce: this.ctx.dpopNonces?.get(route.upstream.origin) }).then(
      (proof) => this.#forward(token, proof),
      (err: unknown) => this.fail(new TokenUnavailableError(route.name, err), this.#upgrade ? 'upgrade refused' : 'request refused'),
    );
  }

  #forward(token: CachedToken | undefined, dpopProof?: string): void {
    if (this.gone) return; // the app went away while we waited for a token
    const { route, req } = this;
    const method = req.method ?? 'GET';
    // An upgrade carries no body: what follows its head belongs to the new protocol.
    const withBody = !this.#upgrade && hasBody(req);
    this.#token = token;
    const relay = this.relay;
    // A handshake is never retried, but its 401 is reported like any other.
    const handler = token ? new Upstream401Handler(relay, this, !this.#upgrade && retryableAfter401(method, withBody, this.#attempt)) : relay;
    this.send(
      {
        method,
        path: route.upstream.target(req.url ?? '/'),
        headers: upstreamRequestHeaders(route, req, token, this.#upgrade, dpopProof),
        body: withBody ? req : null,
        trailers: withBody ? requestTrailers(route, req) : undefined,
        acceptsTrailers: !this.#upgrade && acceptsTrailers(req),
        // A certificate-bound token travels on connections presenting its certificate (RFC 8705 3).
        identity: token?.identity,
      },
      handler,
    );
  }

  invalidateToken(): boolean {
    return this.ctx.tokens.invalidate(this.route.name, this.#token!.accessToken);
  }

  /** RFC 9449 section 9: every answer from an upstream a DPoP token went to may carry the next nonce. */
  responseHeaders(headers: IncomingHttpHeaders): void {
    if (this.#token?.dpop) this.ctx.dpopNonces?.update(this.route.upstream.origin, headers['dpop-nonce']);
  }

  /** A 401 `WWW-Authenticate: DPoP error="use_dpop_nonce"` with a `DPoP-Nonce`: not the token's fault. */
  nonceDemanded(headers: IncomingHttpHeaders): boolean {
    return this.#token?.dpop !== undefined && headers['dpop-nonce'] !== undefined && demandsNonce(headers['www-authenticate']);
  }

  /** The same token with a new proof carrying the nonce just learnt (once: the attempt counts). */
  retryWithNonce(): void {
    this.ctx.logger.debug({ route: this.route.name }, 'upstream asked for a DPoP nonce; retrying once with it');
    this.#attempt += 1;
    this.#withProof(this.#token!);
  }

  retryWithFreshToken(): void {
    const { route, ctx } = this;
    ctx.observer.retriedAfter401?.(route.name);
    ctx.logger.info({ route: route.name }, 'upstream answered 401 to the injected token; exchanging again and retrying once');
    this.#attempt += 1;
    this.#withToken();
  }

  /** A failure the sidecar answers itself, logged (throttled) under `what`. */
  protected fail(err: SidecarError, what: string): void {
    warnThrottled(this.ctx, this.route.name, err, what);
    this.answer(err);
  }

  /** Counted and logged once, by the status the app got or `aborted`. */
  protected record(outcome: ProxyOutcome): void {
    if (this.#recorded) return;
    this.#recorded = true;
    recordOutcome(this.ctx, this.route.name, this.req, outcome, this.#started, this.#upgrade);
  }
}

/**
 * The configuration schema: what a user may write (YAML or JSON) and the
 * normalised, typed shape the rest of the sidecar receives. Unknown keys are
 * rejected everywhere (a typo must fail at start-up, not silently disable a
 * setting). Only this file knows the user-facing spelling of settings.
 */
import { z } from 'zod';
import type { ListenAddress } from '../http/listen-address.js';
import { TOKEN_TYPE } from '../oauth/urns.js';
import { checkCrossReferences, DEFAULT_STS_PROFILE } from './cross-references.js';
import { dpopSchema, profileBindingFields, routeBindingFields } from './dpop-schema.js';
import { metadataSchema, tokenEndpointSchema } from './endpoints-schema.js';
import { exactlyOneSource, httpUrl, listenAddress, nonEmpty, routeHost, seconds, secretFields, secretSource, stringList } from './fields.js';

export { DEFAULT_STS_PROFILE, TOKEN_TYPE, type ListenAddress };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** json: one JSON object per line (for collectors); pretty: one human line per record (for a terminal). */
export const LOG_FORMATS = ['json', 'pretty'] as const;

const subjectTokenSchema = z
  .strictObject({
    ...secretFields,
    type: nonEmpty.default(TOKEN_TYPE.jwt),
    /** Fallback poll for file sources, on top of fs.watch (which misses events on some volumes). */
    pollIntervalSeconds: seconds(0.05).default(5),
  })
  .superRefine(exactlyOneSource);

const JWS_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'] as const;

const clientAuthSchema = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal('none'), clientId: nonEmpty.optional() }),
  z.strictObject({ method: z.literal('client_secret_basic'), clientId: nonEmpty, clientSecret: secretSource }),
  z.strictObject({ method: z.literal('client_secret_post'), clientId: nonEmpty, clientSecret: secretSource }),
  /** RFC 8705 2.1: the client authenticates with the identity's certificate; client_id is sent. */
  z.strictObject({ method: z.literal('tls_client_auth'), clientId: nonEmpty }),
  /** RFC 7523 2.2: a JWT assertion signed with `key`, or with the identity's key when absent. */
  z.strictObject({
    method: z.literal('private_key_jwt'),
    clientId: nonEmpty,
    key: secretSource.optional(),
    algorithm: z.enum(JWS_ALGORITHMS).optional(),
    keyId: nonEmpty.optional(),
    /** The assertion's `aud` (RFC 7523 3 item 3); default the STS URL. */
    audience: nonEmpty.optional(),
    assertionLifetimeSeconds: seconds(1).default(60),
  }),
]);

/**
 * The workload's X.509 identity (PEM files), presented over mTLS to the STS and to https
 * upstreams, and the thumbprint certificate-bound tokens are checked against (RFC 8705).
 */
const identitySchema = z.strictObject({
  /** Leaf certificate first; intermediates may follow. */
  cert: nonEmpty,
  key: nonEmpty,
  /** Trust anchors for the STS and upstreams when they give no `ca` of their own. */
  ca: nonEmpty.optional(),
  /** Fallback poll for rotation, on top of fs.watch. */
  pollIntervalSeconds: seconds(0.05).default(5),
});

const stsSchema = z
  .strictObject({
    url: httpUrl,
    encoding: z.enum(['form', 'json']).default('form'),
    /** JSON key spelling: camelCase as Google's v1/token documents, or snake_case as grpc-go sends. */
    jsonFieldNames: z.enum(['camelCase', 'snake_case']).default('camelCase'),
    ca: nonEmpty.optional(),
    /** TLS server name (SNI and certificate check) when it differs from the URL's host. */
    servername: nonEmpty.optional(),
    /** Present identity's certificate to an https STS (RFC 8705 binding needs it). */
    clientCertificate: z.boolean().default(true),
    clientAuth: clientAuthSchema.default({ method: 'none' }),
    actorToken: z.strictObject({ ...secretFields, type: nonEmpty }).superRefine(exactlyOneSource).optional(),
    timeoutSeconds: seconds(0.01).default(10),
    maxResponseBytes: z.number().int().min(1024).default(1024 * 1024),
    /** Plain-http STS URLs off loopback send the subject token in clear; require saying so. */
    allowInsecureHttp: z.boolean().default(false),
    /** Issue 16: `binding: dpop` makes every route at this profile DPoP-bound (RFC 9449); see dpop-schema.ts. */
    ...profileBindingFields,
  });

/**
 * Several identities (issue 13). The user-facing shape: the top-level `sts` (with the
 * top-level `subjectToken`) stays the profile every route uses unless it says otherwise,
 * named `default`, so every existing config keeps its meaning; `stsProfiles` adds named
 * profiles with every `sts` key and an optional `subjectToken` of their own (without it,
 * the top-level one); `routes[].sts` picks a profile and `routes[].subjectToken` overrides
 * the subject token for one route (Kubernetes projects several service-account tokens
 * with different audiences into one pod). One shape rather than "sts or a map": a config
 * grows a second identity by adding keys, never by rewriting the first.
 */
const profileName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'use 1-64 letters, digits, "_", "." or "-"');

const stsProfileSchema = stsSchema.extend({ subjectToken: subjectTokenSchema.optional() });

const authorizationSchema = z.strictObject({
  header: nonEmpty.default('authorization').transform((h) => h.toLowerCase()),
  scheme: z.string().default('Bearer'),
  /** When false and the app already sent this header, the app's value is forwarded and no token is injected. */
  replaceExisting: z.boolean().default(true),
});

const routeSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'use 1-64 letters, digits, "_", "." or "-"'),
    host: routeHost.optional(),
    pathPrefix: z.string().startsWith('/', 'must start with "/"').default('/'),
    listen: listenAddress.optional(),
    /** Absent: a token-only route, served by tokenEndpoint / metadata and never proxied. */
    upstream: httpUrl.optional(),
    audience: stringList.optional(),
    resource: stringList.optional(),
    scope: stringList.transform((s) => s.join(' ')).optional(),
    requestedTokenType: nonEmpty.default(TOKEN_TYPE.accessToken),
    /** The STS profile this route's token is exchanged at: `default` (the top-level `sts`) or a key of `stsProfiles`. */
    sts: profileName.default(DEFAULT_STS_PROFILE),
    /** This route's own subject token, instead of its profile's (or the top-level) one. */
    subjectToken: subjectTokenSchema.optional(),
    /** Google STS `options` (sent as a JSON string). */
    options: z.record(z.string(), z.unknown()).optional(),
    /** Lazy routes exchange on first use and do not gate /readyz. */
    lazy: z.boolean().default(false),
    authorization: authorizationSchema.prefault({}),
    /**
     * Send the route's `host` as the Host header instead of the upstream's (for a gateway that
     * routes by virtual host). Never the app's Host as such: that would let an app name any
     * virtual host behind the gateway with this route's token (issue 10).
     */
    preserveHost: z.boolean().default(false),
    /**
     * The protocol spoken to `upstream` (issue 12). `auto`: over https, TLS ALPN offers `h2` and
     * `http/1.1` and the upstream's pick is used (learned on the first connection, per workload
     * identity); over http, HTTP/1.1. `http1`: HTTP/1.1 only. `h2c`: cleartext HTTP/2 with prior
     * knowledge (RFC 9113 3.3), for an http upstream only. Upgrades (WebSocket) always use HTTP/1.1.
     */
    upstreamProtocol: z.enum(['auto', 'http1', 'h2c']).default('auto'),
    /**
     * Time for the upstream's response headers, counted from the request's start on HTTP/1.1
     * (and between body chunks there); on HTTP/2 from the end of the request body, a stream's
     * silence after that being bounded by `limits.idleTimeoutSeconds` instead (gRPC streams).
     */
    upstreamTimeoutSeconds: seconds(0.01).default(30),
    /** PEM trust anchors for an https upstream (default: identity.ca, else the system's). */
    ca: nonEmpty.optional(),
    /** TLS server name (SNI and certificate check) when it differs from the upstream's host. */
    servername: nonEmpty.optional(),
    /** Present identity's certificate to an https upstream. */
    clientCertificate: z.boolean().default(true),
    /**
     * Forward proxy (issue 4): terminate an app's CONNECT tunnel to this host with a leaf from
     * the interception CA so the token can be injected. Without it such a tunnel passes untouched.
     */
    intercept: z.boolean().default(false),
    ...routeBindingFields,
  })
  // The DPoP rules (binding: dpop needs upstream and the Authorization header) depend on the
  // route's STS profile too: checked with the cross-references.
  .superRefine((r, ctx) => {
    if (!r.upstream) {
      if (r.host || r.listen) ctx.addIssue({ code: 'custom', path: ['upstream'], message: 'is required when the route has "host" or "listen"' });
      return;
    }
    if (!r.host && !r.listen) {
      ctx.addIssue({ code: 'custom', message: 'give "host" (shared proxy listener) or "listen" (dedicated port), or both' });
    }
    if (r.preserveHost && !r.host) {
      ctx.addIssue({ code: 'custom', path: ['preserveHost'], message: 'needs "host": it is the Host header sent upstream' });
    }
    if (r.upstreamProtocol === 'h2c' && r.upstream.protocol === 'https:') {
      ctx.addIssue({ code: 'custom', path: ['upstreamProtocol'], message: '"h2c" is cleartext HTTP/2: use an http:// upstream, or "auto" (ALPN) for https' });
    }
    if (r.upstream.search || r.upstream.hash) {
      ctx.addIssue({ code: 'custom', path: ['upstream'], message: 'must not have a query or fragment' });
    }
  });

/**
 * Limits on what a peer can consume (issue 10). Each is a bound a neighbour can push against;
 * the defaults are what a sidecar ships with, documented in docs/security.md.
 */
const limitsSchema = z.strictObject({
  /** Connections open at once, per listener; a connection past it is closed as it is accepted. */
  maxConnections: z
    .strictObject({
      /** The shared proxy listener, and each route's dedicated listener. */
      proxy: z.number().int().min(1).default(512),
      admin: z.number().int().min(1).default(64),
      /** The token endpoint and each metadata emulation listener. */
      endpoints: z.number().int().min(1).default(64),
    })
    .prefault({}),
  /** Pipelined requests one connection may have in flight; a connection that sends more is closed. */
  maxRequestsInFlightPerConnection: z.number().int().min(1).default(16),
  /** Time for an app to send a complete request head; also bounds a connection that sends nothing. */
  headersTimeoutSeconds: seconds(0.1).default(15),
  /** Time for an app to send a whole request, body included. */
  requestTimeoutSeconds: seconds(0.1).default(300),
  /** A kept-alive connection with no request in flight is closed after this. */
  keepAliveTimeoutSeconds: seconds(0.1).default(30),
  /** A connection, upgraded connection or spliced tunnel with no bytes either way for this long is closed. */
  idleTimeoutSeconds: seconds(0.1).default(600),
  /**
   * A 401 from an upstream drops the token and exchanges again at most once per route in this
   * window; other 401s in the window reach the app as they are (no exchange storm, issue 10).
   */
  reexchangeAfter401IntervalSeconds: seconds(0).default(5),
});

const cacheSchema = z.strictObject({
  /** Refresh when this fraction of the token's lifetime is left (refresh-ahead). */
  refreshBeforeExpiryRatio: z.number().gt(0).lt(1).default(0.25),
  /** A token is treated as expired this many seconds early (capped at 5% of its lifetime). */
  expirySkewSeconds: seconds(0).default(5),
  retryInitialDelaySeconds: seconds(0.01).default(1),
  retryMaxDelaySeconds: seconds(0.01).default(30),
  maxEntries: z.number().int().min(1).default(1000),
});

/** Forward proxy (HTTP_PROXY / HTTPS_PROXY / CONNECT) on `proxy.listen`, issue 4. */
const forwardSchema = z.strictObject({
  /** A destination no route matches: passed through without a token, or refused with 403. */
  unmatched: z.enum(['tunnel', 'deny']).default('tunnel'),
  /** The interception CA (PEM files, e.g. from a Secret); generated at start when absent. */
  ca: z.strictObject({ cert: nonEmpty, key: nonEmpty }).optional(),
  /** Where a generated CA's certificate (never its key) is written; default in main.ts (os.tmpdir()). */
  caCertOut: nonEmpty.optional(),
  /** Lifetime of the leaf certificates issued per intercepted host (re-issued when a quarter is left). */
  leafValiditySeconds: seconds(60).default(24 * 3600),
});

export const configSchema = z
  .strictObject({
    proxy: z
      .strictObject({
        listen: listenAddress.default({ host: '127.0.0.1', port: 15001 }),
        /**
         * Let proxy.listen and routes[].listen bind a non-loopback address, so other pods or
         * hosts can send requests that leave with this workload's tokens. Off by default.
         */
        allowNonLoopback: z.boolean().default(false),
      })
      .prefault({}),
    admin: z.strictObject({ listen: listenAddress.default({ host: '127.0.0.1', port: 15000 }) }).prefault({}),
    log: z.strictObject({ level: z.enum(LOG_LEVELS).default('info'), format: z.enum(LOG_FORMATS).default('json') }).prefault({}),
    /**
     * The default profile's subject token, and the one every route without its own (or its
     * profile's) uses. Required even when no route uses it: existing code and tests read
     * `config.subjectToken` as always there, and requiring it can be relaxed later without
     * breaking a config, not the other way round.
     */
    subjectToken: subjectTokenSchema,
    /** The `default` STS profile. */
    sts: stsSchema,
    stsProfiles: z.record(profileName, stsProfileSchema).optional(),
    identity: identitySchema.optional(),
    /** The DPoP key (RFC 9449) proved by routes with `binding: dpop` (their own or their STS profile's). */
    dpop: dpopSchema.prefault({}),
    cache: cacheSchema.prefault({}),
    limits: limitsSchema.prefault({}),
    shutdown: z
      .strictObject({
        /** The longest a shutdown waits for requests in flight (readiness fails for all of it). */
        drainSeconds: seconds(0).default(15),
        /**
         * Listeners keep accepting during the drain (an app in its own shutdown may still call
         * out); the sidecar exits once nothing has been in flight for this long (issue 13).
         */
        idleSeconds: seconds(0).default(2),
      })
      .prefault({}),
    forward: forwardSchema.prefault({}),
    routes: z.array(routeSchema).min(1, 'configure at least one route'),
    tokenEndpoint: tokenEndpointSchema.optional(),
    metadata: metadataSchema.optional(),
  })
  // `when: () => true`: run even when a field already failed, so one check-config run
  // reports every problem. The value may then be partly unparsed, hence the guards.
  .superRefine((c, ctx) => checkCrossReferences(c as unknown as Record<string, unknown>, ctx), { when: () => true });

export type Config = z.output<typeof configSchema>;
export type RouteConfig = Config['routes'][number];
export type StsConfig = Config['sts'];
export type CacheConfig = Config['cache'];
export type SubjectTokenConfig = Config['subjectToken'];
export type StsProfileConfig = NonNullable<Config['stsProfiles']>[string];
export type ClientAuthConfig = StsConfig['clientAuth'];
export type SecretSourceConfig = z.output<typeof secretSource>;
export type IdentityConfig = NonNullable<Config['identity']>;
export type DpopConfig = Config['dpop'];
export type ForwardConfig = Config['forward'];
export type LimitsConfig = Config['limits'];
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = (typeof LOG_FORMATS)[number];

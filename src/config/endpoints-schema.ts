/**
 * The schema of the local endpoints for SDKs (issue 6): the RFC 8693 token endpoint and the GCE
 * and Azure metadata emulations. Beside schema.ts, which composes it, so that file stays one
 * screenful per area.
 */
import { z } from 'zod';
import { listenAddress, nonEmpty } from './fields.js';

const routeName = nonEmpty;

/** Issue 6: the local RFC 8693 endpoint for apps whose libraries ask a token endpoint themselves. */
export const tokenEndpointSchema = z.strictObject({
  /** Loopback only (checked below): the endpoint hands out raw tokens. */
  listen: listenAddress,
  /**
   * pod-token: the caller must present the sidecar's own subject token as subject_token;
   * loopback: any caller that can reach the (loopback) listener is served.
   */
  callers: z.enum(['pod-token', 'loopback']).default('pod-token'),
  /** Route for requests whose audience/resource/scope match no route. */
  defaultRoute: routeName.optional(),
  /**
   * The routes whose tokens this endpoint may hand out (issue 10). Default: the token-only
   * routes (no upstream); a proxied route's token is served only when listed here.
   */
  routes: z.array(routeName).optional(),
});

/** GCE metadata server emulation for google-auth-library, gcp-metadata and friends (GCE_METADATA_HOST). */
const gceMetadataSchema = z.strictObject({
  listen: listenAddress,
  /** The route whose token .../service-accounts/default/token returns. */
  route: routeName,
  projectId: nonEmpty,
  numericProjectId: z
    .union([z.string().regex(/^\d+$/, 'must be digits'), z.number().int().nonnegative()])
    .transform(String)
    .optional(),
  serviceAccountEmail: z.string().regex(/^[^@\s/]+@[^@\s/]+$/, 'must be an e-mail address'),
  universeDomain: nonEmpty.default('googleapis.com'),
});

/** Azure IMDS managed-identity emulation for AZURE_POD_IDENTITY_AUTHORITY_HOST. */
const azureMetadataSchema = z
  .strictObject({
    listen: listenAddress,
    /** IMDS `resource` (e.g. https://vault.azure.net) -> route name. */
    resources: z.record(nonEmpty, routeName).default({}),
    /** Route for any other resource; without it an unknown resource is refused. */
    defaultRoute: routeName.optional(),
    /** When set, a request naming another client_id is refused (as IMDS does for an identity it lacks). */
    clientId: nonEmpty.optional(),
  })
  .superRefine((a, ctx) => {
    if (Object.keys(a.resources).length === 0 && a.defaultRoute === undefined) {
      ctx.addIssue({ code: 'custom', path: ['resources'], message: 'map at least one resource to a route, or give defaultRoute' });
    }
  });

export const metadataSchema = z.strictObject({ gce: gceMetadataSchema.optional(), azure: azureMetadataSchema.optional() });

/** The reference STS for the demo, the tests and local development. Re-exports only. */
export {
  startDevSts,
  type CnfEncoding,
  type DevSts,
  type DevStsClient,
  type DevStsOptions,
  type DevStsStats,
  type DevStsTlsOptions,
  type StaticRule,
  type TrustedIssuer,
} from './server.js';
export { createWorkloadIssuer, DEFAULT_WORKLOAD_ISSUER, type MintClaims, type WorkloadIssuer, type WorkloadIssuerOptions } from './workload-issuer.js';
export { runDevStsCommand, DEV_STS_USAGE, type DevStsCommandIo } from './cli.js';
export type { Confirmation, RejectedTokenError } from './exchange.js';
export type { OAuthErrorCode } from '../oauth/oauth-error.js';

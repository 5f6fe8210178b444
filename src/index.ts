/** Public API of the sts-sidecar package. */
export { startSidecar, type Sidecar, type StartOptions } from './main.js';
export { parseConfig, parseConfigText, loadConfigFile, ConfigValidationError } from './config/load.js';
export type { Config, RouteConfig } from './config/schema.js';
export * from './errors.js';
export { createStsClient, type StsClient, type ExchangeParams, type IssuedToken } from './sts/index.js';
export { createTokenProvider, type TokenProvider } from './cache/token-provider.js';
export { startDevSts, createWorkloadIssuer } from './devsts/index.js';
export {
  verifyBoundToken,
  type BoundTokenKeys,
  type BoundTokenPayload,
  type PeerCertificateInput,
  type VerifyBoundTokenOptions,
} from './resource/verify-bound-token.js';

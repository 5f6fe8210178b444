/**
 * Public API of the sts-sidecar package: the sidecar itself. The reference STS and the
 * bound-token verifier are subpath exports (`sts-sidecar/dev-sts`, `sts-sidecar/verify`) so
 * that importing the sidecar never loads the development STS (issue 11 item 6).
 */
export { startSidecar, type Sidecar, type StartOptions } from './main.js';
export { parseConfig, parseConfigText, loadConfigFile, ConfigValidationError } from './config/load.js';
export type { Config, RouteConfig } from './config/schema.js';
export * from './errors.js';
export { createStsClient, type StsClient, type ExchangeParams, type IssuedToken } from './sts/index.js';
export { createTokenProvider, type TokenProvider } from './cache/token-provider.js';

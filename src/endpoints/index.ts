/** Local endpoints for unmodified SDK clients (issue 6). Re-exports only. */
export { createTokenEndpointHandler, type TokenEndpointOptions } from './token-endpoint.js';
export { createGceMetadataHandler, type GceMetadataOptions } from './gce-metadata.js';
export { createAzureImdsHandler, type AzureImdsOptions } from './azure-imds.js';
export { createPodTokenCheck, createRoutePodTokenCheck, type PodTokenSource } from './caller-check.js';
export { selectRoute, type ServableRoute } from './route-selection.js';
export type { EndpointContext, EndpointName, EndpointObserver } from './context.js';
export { endpointListeners, type EndpointListener } from './from-config.js';

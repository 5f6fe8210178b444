export { createStsClient, type StsClient, type StsClientOptions } from './client.js';
export { noClientAuth, clientSecretBasic, clientSecretPost, formEncode, type ClientAuth } from './client-auth.js';
export { encodeTokenRequest, exchangeParameters, GRANT_TYPE_TOKEN_EXCHANGE, type ExchangeParams } from './exchange-request.js';
export { processExchangeResponse, type IssuedToken } from './exchange-response.js';

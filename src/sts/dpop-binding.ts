/**
 * RFC 9449 as a decorator of the exchange, beside the RFC 8705 one (certificate-binding.ts).
 * For a request that carried a DPoP proof:
 *
 * - `token_type: DPoP` (section 5): a JWT's `cnf.jkt` must be the key's thumbprint (section
 *   6.1); a token bound to another key would be refused upstream, so it is discarded and the
 *   exchange asked once more; a second mismatch fails closed (ERR_STS_DPOP_BINDING_MISMATCH).
 * - `Bearer` (the STS ignored the proof, section 5 allows it): refused with
 *   ERR_STS_DPOP_NOT_BOUND, unless the route sets `dpop.allowBearer`: a route that asked for
 *   sender-constrained tokens must not silently send bearer ones.
 */
import { decodeJwt } from 'jose';
import { StsError } from '../errors.js';
import type { BindingObserver } from './certificate-binding.js';
import type { Exchange } from './client.js';

export function isDpopTokenType(tokenType: string): boolean {
  return /^dpop$/i.test(tokenType);
}

export function withDpopBinding(exchange: Exchange, observer: BindingObserver = {}): Exchange {
  return async (params, identity, route) => {
    const dpop = params.dpop;
    for (let attempt = 1; ; attempt++) {
      const token = await exchange(params, identity, route);
      if (!dpop) return token;
      if (!isDpopTokenType(token.tokenType)) {
        if (dpop.allowBearer) return token;
        throw new StsError('ERR_STS_DPOP_NOT_BOUND', `route ${route} asked for a DPoP-bound token and the STS issued a ${token.tokenType} token; set dpop.allowBearer to accept it`);
      }
      // An opaque token cannot be checked here; the resource server checks it (section 6.2).
      const jkt = boundKey(token.accessToken);
      if (jkt === undefined || jkt === dpop.key.thumbprint) return token;
      observer.bindingMismatch?.(route);
      if (attempt === 2) {
        throw new StsError('ERR_STS_DPOP_BINDING_MISMATCH', `the STS bound the token to another key than the sidecar's DPoP key (jkt ${dpop.key.thumbprint}); it was discarded`);
      }
    }
  };
}

/** A JWT's `cnf.jkt` (RFC 9449 section 6.1), or undefined for an opaque token or one without it. */
function boundKey(accessToken: string): string | undefined {
  try {
    const cnf = decodeJwt(accessToken)['cnf'];
    const jkt = typeof cnf === 'object' && cnf !== null ? (cnf as Record<string, unknown>)['jkt'] : undefined;
    return typeof jkt === 'string' ? jkt : undefined;
  } catch {
    return undefined;
  }
}

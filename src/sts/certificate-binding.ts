/**
 * RFC 8705 section 3.1 as a decorator of the exchange: a token whose `cnf.x5t#S256` names
 * another certificate than the workload's would be refused upstream (or, worse, accepted by
 * a lax one). It is discarded and the exchange asked once more; a second mismatch fails
 * closed with ERR_STS_TOKEN_BINDING_MISMATCH. Without an identity there is nothing to check.
 */
import { StsError } from '../errors.js';
import { checkCertificateBinding } from '../tls/binding.js';
import type { Exchange } from './client.js';

export interface BindingObserver {
  /** The STS issued a token bound to another certificate; it was discarded. */
  bindingMismatch?(route: string): void;
}

export function withCertificateBinding(exchange: Exchange, observer: BindingObserver = {}): Exchange {
  return async (params, identity, route) => {
    for (let attempt = 1; ; attempt++) {
      const token = await exchange(params, identity, route);
      if (!identity || checkCertificateBinding(token.accessToken, identity.thumbprint) !== 'mismatch') return token;
      observer.bindingMismatch?.(route);
      if (attempt === 2) {
        throw new StsError(
          'ERR_STS_TOKEN_BINDING_MISMATCH',
          `the STS issued a token bound to another certificate than the workload's (x5t#S256 ${identity.thumbprint}); it was discarded`,
        );
      }
    }
  };
}

/**
 * RFC 8705 section 3.1: what a JWT access token says it is bound to. The sidecar does not
 * verify the token's signature (the upstream does); it reads the claim to avoid sending a
 * token over a connection whose certificate cannot match it.
 */
import { decodeJwt } from 'jose';
import { thumbprintMatches } from './thumbprint.js';

export type BindingCheck = 'unbound' | 'match' | 'mismatch';

/** Compare a token's `cnf.x5t#S256` (if it is a JWT carrying one) with a thumbprint. */
export function checkCertificateBinding(accessToken: string, thumbprint: string): BindingCheck {
  let cnf: unknown;
  try {
    cnf = decodeJwt(accessToken)['cnf'];
  } catch {
    return 'unbound'; // opaque tokens: the STS may still bind them server-side; nothing to check here
  }
  if (typeof cnf !== 'object' || cnf === null || !('x5t#S256' in cnf)) return 'unbound';
  return thumbprintMatches((cnf as Record<string, unknown>)['x5t#S256'], thumbprint) ? 'match' : 'mismatch';
}

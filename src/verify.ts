/**
 * `sts-sidecar/verify`: the resource server's half of RFC 8705 (issue 11 item 6). A service
 * that checks certificate-bound tokens imports this entry alone, not the sidecar.
 */
export {
  verifyBoundToken,
  type BoundTokenKeys,
  type BoundTokenPayload,
  type PeerCertificateInput,
  type VerifyBoundTokenOptions,
} from './resource/verify-bound-token.js';
export { BoundTokenError, type BoundTokenErrorCode } from './errors.js';

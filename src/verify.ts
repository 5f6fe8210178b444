/**
 * `sts-sidecar/verify`: the resource server's half of RFC 8705 (issue 11 item 6) and of
 * RFC 9449 DPoP (issue 16). A service that checks bound tokens imports this entry alone,
 * not the sidecar.
 */
export {
  verifyBoundToken,
  type BoundTokenKeys,
  type BoundTokenPayload,
  type PeerCertificateInput,
  type VerifyBoundTokenOptions,
} from './resource/verify-bound-token.js';
export { verifyDpopRequest, type DpopBoundPayload, type DpopRequestInput, type VerifyDpopRequestOptions } from './resource/verify-dpop.js';
export { DpopReplayCache, verifyDpopProof, type DpopProofCheck, type VerifiedDpopProof } from './resource/dpop-proof.js';
export { BoundTokenError, type BoundTokenErrorCode } from './errors.js';

/** DPoP (RFC 9449): the key, proofs and nonces the sidecar uses on the workload's behalf (issue 16). */
export { DPOP_ALGORITHMS, dpopKeyFromText, generateDpopKey, type DpopAlgorithm, type DpopKey } from './key.js';
export { openDpopKeySource, staticDpopKeySource, type DpopKeySource, type DpopKeySourceOptions } from './key-source.js';
export { accessTokenHash, createDpopProof, DPOP_PROOF_TYPE, proofTargetUri, type ProofClaims } from './proof.js';
export { demandsNonce, NonceStore } from './nonces.js';

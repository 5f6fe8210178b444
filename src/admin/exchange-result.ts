/**
 * The `result` label of sts_sidecar_sts_exchanges_total: an exchange's outcome folded into
 * a closed set, so the label stays bounded whatever an STS or a bug throws.
 */
import { SidecarError } from '../errors.js';

export type ExchangeResult =
  | 'success'
  | 'oauth_error'
  | 'invalid_response'
  | 'timeout'
  | 'unreachable'
  | 'server_error'
  | 'subject_token_error'
  | 'binding_mismatch'
  | 'error';

/**
 * The label for an exchange as the cache reports it: `success` without an error, else what
 * it failed with (anything not ours is `error`).
 */
export function exchangeResult(err?: unknown): ExchangeResult {
  if (err === undefined) return 'success';
  if (!(err instanceof SidecarError)) return 'error';
  switch (err.code) {
    case 'ERR_STS_OAUTH_ERROR':
      return 'oauth_error';
    case 'ERR_STS_RESPONSE_INVALID':
    case 'ERR_STS_RESPONSE_TOO_LARGE':
      return 'invalid_response';
    case 'ERR_STS_TIMEOUT':
      return 'timeout';
    case 'ERR_STS_UNREACHABLE':
      return 'unreachable';
    case 'ERR_STS_SERVER_ERROR':
      return 'server_error';
    case 'ERR_SUBJECT_TOKEN_EXPIRED':
    case 'ERR_SUBJECT_TOKEN_UNAVAILABLE':
      return 'subject_token_error';
    case 'ERR_STS_TOKEN_BINDING_MISMATCH':
      return 'binding_mismatch';
    default:
      return 'error';
  }
}

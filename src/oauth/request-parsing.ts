/**
 * Reading a token request body into one normalised parameter map, whatever the
 * encoding: RFC 8693 section 2.1 form bodies, grpc-go style snake_case JSON and
 * Google STS v1/token camelCase JSON all end up as snake_case names with string
 * values. Semantics (which parameters are required, what values mean) are checked
 * later, in token-exchange-request.ts. Shared by the reference STS and the sidecar's
 * local token endpoint, which must accept the same client shapes.
 */
import type { IncomingMessage } from 'node:http';
import { OAuthError } from './oauth-error.js';

/** snake_case parameter name -> values in request order (only audience/resource may hold several). */
export type TokenParams = ReadonlyMap<string, readonly string[]>;

/** RFC 8693 section 2.1: audience and resource MAY be repeated; nothing else may (RFC 6749 section 3.2). */
const MULTI_VALUED: ReadonlySet<string> = new Set(['audience', 'resource']);

/**
 * Parameters this endpoint understands. RFC 6749 section 3.1: the server MUST
 * ignore unrecognised parameters, so anything else is dropped at the edge.
 */
const KNOWN_PARAMS: ReadonlySet<string> = new Set([
  'grant_type',
  'subject_token',
  'subject_token_type',
  'requested_token_type',
  'actor_token',
  'actor_token_type',
  'audience',
  'resource',
  'scope',
  'options',
  'client_id',
  'client_secret',
  // RFC 7521 section 4.2 (private_key_jwt, RFC 7523 section 2.2).
  'client_assertion_type',
  'client_assertion',
]);

const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';

export class BodyTooLargeError extends OAuthError {
  constructor(maxBodyBytes: number) {
    super('invalid_request', `request body exceeds ${maxBodyBytes} bytes`, { status: 413 });
  }
}

/** Read, decode and normalise the body of a token request. Throws OAuthError. */
export async function readTokenParams(req: IncomingMessage, maxBodyBytes: number): Promise<TokenParams> {
  const mediaType = parseContentType(req.headers['content-type']);
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    throw new OAuthError('invalid_request', 'compressed request bodies are not supported');
  }
  const text = decodeUtf8(await readBody(req, maxBodyBytes));
  return mediaType === FORM ? parseFormParams(text) : parseJsonParams(text);
}

/**
 * Accepts the two media types we speak, with or without parameters. A charset
 * other than UTF-8 is refused rather than silently mis-decoded (RFC 8259 section
 * 8.1 mandates UTF-8 for JSON; form bodies from OAuth clients are UTF-8 in practice).
 */
export function parseContentType(header: string | undefined): typeof FORM | typeof JSON_TYPE {
  const [type = '', ...parameters] = (header ?? '').split(';');
  const mediaType = type.trim().toLowerCase();
  if (mediaType !== FORM && mediaType !== JSON_TYPE) {
    throw new OAuthError(
      'invalid_request',
      `unsupported content type; send ${FORM} (RFC 8693 section 2.1) or ${JSON_TYPE}`,
    );
  }
  for (const parameter of parameters) {
    const [name = '', value = ''] = parameter.split('=', 2);
    if (name.trim().toLowerCase() !== 'charset') continue;
    const charset = value.trim().replace(/^"|"$/g, '').toLowerCase();
    if (charset !== 'utf-8' && charset !== 'utf8' && charset !== 'us-ascii') {
      throw new OAuthError('invalid_request', 'unsupported charset; send UTF-8');
    }
  }
  return mediaType;
}

/**
 * Collect the body up to `maxBodyBytes`. Past the limit we stop buffering and
 * answer 413 at once (the server closes the connection after the response, so an
 * endless body cannot keep us reading).
 */
export function readBody(req: IncomingMessage, maxBodyBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBodyBytes) {
    return Promise.reject(new BodyTooLargeError(maxBodyBytes));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBodyBytes) {
        cleanup();
        reject(new BodyTooLargeError(maxBodyBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new OAuthError('invalid_request', 'request body could not be read', { cause: err }));
    };
    const onClose = (): void => {
      // 'close' before 'end' means the client went away mid-body.
      if (!req.complete) onError(new Error('request aborted'));
    };
    function cleanup(): void {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    }
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

function decodeUtf8(body: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch (err) {
    throw new OAuthError('invalid_request', 'request body is not valid UTF-8', { cause: err });
  }
}

/** RFC 6749 Appendix B / RFC 8693 section 2.1: form-urlencoded, repeated keys for audience/resource. */
export function parseFormParams(body: string): TokenParams {
  const params = new ParamCollector();
  for (const [name, value] of new URLSearchParams(body)) params.add(name, value);
  return params.result();
}

/**
 * JSON bodies: an object whose keys are snake_case (grpc-go's STS credentials) or
 * camelCase (Google STS v1/token). Values are strings; audience and resource may
 * also be arrays of strings. null counts as absent.
 */
export function parseJsonParams(body: string): TokenParams {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    // JSON.parse's message quotes the body (which holds the subject token): never pass it on.
    throw new OAuthError('invalid_request', 'request body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new OAuthError('invalid_request', 'JSON request body must be an object');
  }
  const params = new ParamCollector();
  for (const [key, value] of Object.entries(parsed)) {
    const name = toSnakeCase(key);
    if (!KNOWN_PARAMS.has(name) || value === null) continue;
    if (typeof value === 'string') {
      params.add(name, value);
    } else if (Array.isArray(value) && MULTI_VALUED.has(name)) {
      if (!value.every((v): v is string => typeof v === 'string')) {
        throw new OAuthError('invalid_request', `parameter '${name}' must be a string or an array of strings`);
      }
      for (const v of value) params.add(name, v);
    } else {
      throw new OAuthError('invalid_request', `parameter '${name}' must be a string`);
    }
    params.sealJsonKey(name, key);
  }
  return params.result();
}

/** `subjectTokenType` -> `subject_token_type`; snake_case keys pass through unchanged. */
export function toSnakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Accumulates parameters, enforcing the repetition and empty-value rules once for both encodings. */
class ParamCollector {
  private readonly values = new Map<string, string[]>();
  private readonly jsonKeys = new Map<string, string>();

  add(name: string, value: string): void {
    if (!KNOWN_PARAMS.has(name)) return;
    const existing = this.values.get(name);
    if (existing !== undefined && !MULTI_VALUED.has(name)) {
      throw new OAuthError('invalid_request', `parameter '${name}' must not be repeated (RFC 6749 section 3.2)`);
    }
    // RFC 6749 section 3.2: a parameter without a value is treated as omitted
    // (the grpc-go seed sends "resource": "" and "audience": "").
    if (value === '') return;
    if (existing === undefined) this.values.set(name, [value]);
    else existing.push(value);
  }

  /** One parameter spelled twice in JSON (`subjectToken` and `subject_token`) is a repetition too. */
  sealJsonKey(name: string, key: string): void {
    const previous = this.jsonKeys.get(name);
    if (previous !== undefined && previous !== key) {
      throw new OAuthError('invalid_request', `parameter '${name}' must not be repeated (RFC 6749 section 3.2)`);
    }
    this.jsonKeys.set(name, key);
  }

  result(): TokenParams {
    return new Map([...this.values].map(([name, values]) => [name, Object.freeze(values)]));
  }
}

/**
 * Structured JSON logs (pino) that never carry a token. Redaction is layered:
 *  - pino's path redaction, compiled once, for every field that can hold a credential;
 *  - an error serializer that scrubs messages and stacks (an STS may echo a token);
 *  - message strings are scrubbed too.
 * Scrubbing uses the sidecar's own Redactor (issue 10 item 23), so a logger knows the
 * secrets of the sidecar it belongs to and of no other. See redact.ts for the rules.
 *
 * Expected failures (a SidecarError: the STS refused, timed out, was unreachable; a system
 * error such as ENOENT) are logged without stacks, one short line with code and cause; a
 * stack is kept only for errors nobody expected (issue 13: each failed exchange used to
 * log about a kilobyte of stack).
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { SidecarError } from '../errors.js';
import { prettyDestination } from './pretty.js';
import { createRedactor, REDACTED, type Redactor } from './redact.js';
import type { LogFormat, LogLevel } from '../config/schema.js';

export type Logger = PinoLogger;

const SECRET_FIELDS = [
  'authorization',
  'proxy-authorization',
  'subjectToken',
  'subject_token',
  'actorToken',
  'actor_token',
  'accessToken',
  'access_token',
  'token',
  'clientSecret',
  'client_secret',
  'cookie',
];

const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  ...SECRET_FIELDS.map((f) => `*.*.${f}`),
  'headers.authorization',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
];

interface SerializedError {
  type: string;
  message: string;
  code?: string;
  stack?: string;
  cause?: SerializedError;
}

function errorSerializer(redactor: Redactor): (err: unknown) => SerializedError {
  const serialize = (err: unknown, depth: number): SerializedError => {
    if (!(err instanceof Error)) return { type: typeof err, message: redactor.scrub(String(err)) };
    const out: SerializedError = { type: err.name, message: redactor.scrub(err.message) };
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') out.code = code;
    if (err.stack && !expected(err)) out.stack = redactor.scrub(err.stack, 4096);
    if (err.cause !== undefined && depth < 4) out.cause = serialize(err.cause, depth + 1);
    return out;
  };
  return (err) => serialize(err, 0);
}

/**
 * An error whose code says what happened, so its stack adds nothing: ours, or a system or
 * library error (ECONNREFUSED, ENOENT, UND_ERR_SOCKET). Node's own ERR_* codes mostly mean
 * a bug (ERR_INVALID_ARG_TYPE), so they keep their stack.
 */
function expected(err: Error): boolean {
  if (err instanceof SidecarError) return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && !code.startsWith('ERR_');
}

/**
 * `redactor`: the sidecar's own; without one the logger scrubs JWT-shaped strings only.
 * `format`: `pretty` writes one human line per record through log/pretty.ts.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream, redactor: Redactor = createRedactor(), format: LogFormat = 'json'): Logger {
  const serializeError = errorSerializer(redactor);
  const target = destination ?? pino.destination({ dest: 1, sync: false });
  return pino(
    {
      name: 'sts-sidecar',
      level,
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      serializers: { err: serializeError, error: serializeError },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) {
            if (typeof args[i] === 'string') args[i] = redactor.scrub(args[i] as string, 2048);
          }
          method.apply(this, args);
        },
      },
    },
    format === 'pretty' ? prettyDestination(target) : target,
  );
}

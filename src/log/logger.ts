/**
 * Structured JSON logs (pino) that never carry a token. Redaction is layered:
 *  - pino's path redaction, compiled once, for every field that can hold a credential;
 *  - an error serializer that scrubs messages and stacks (an STS may echo a token);
 *  - message strings are scrubbed too.
 * Scrubbing uses the sidecar's own Redactor (issue 10 item 23), so a logger knows the
 * secrets of the sidecar it belongs to and of no other. See redact.ts for the rules.
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { createRedactor, REDACTED, type Redactor } from './redact.js';
import type { LogLevel } from '../config/schema.js';

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
    if (err.stack) out.stack = redactor.scrub(err.stack, 4096);
    if (err.cause !== undefined && depth < 4) out.cause = serialize(err.cause, depth + 1);
    return out;
  };
  return (err) => serialize(err, 0);
}

/** `redactor`: the sidecar's own; without one the logger scrubs JWT-shaped strings only. */
export function createLogger(level: LogLevel, destination?: DestinationStream, redactor: Redactor = createRedactor()): Logger {
  const serializeError = errorSerializer(redactor);
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
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/**
 * `log.format: pretty`: each JSON record pino writes becomes one line a person reads in a
 * terminal: time, level, message, then the fields as key=value. It is a plain synchronous
 * stream in front of the real destination, not pino-pretty or a worker-thread transport: a
 * transport costs a thread and its heap in every pod (issue 15), and this is all a terminal
 * needs. The records it formats were already redacted by the logger.
 */
import type { DestinationStream } from 'pino';

/** Fields every record has (or that only a collector wants): not repeated on each line. */
const OMITTED = new Set(['time', 'level', 'msg', 'pid', 'hostname', 'name']);

export function prettyDestination(destination: DestinationStream): DestinationStream & { flush?(cb?: () => void): void } {
  const target = destination as DestinationStream & { flush?(cb?: () => void): void };
  return {
    write(chunk: string) {
      // pino writes one record per call; split anyway, a record is never cut in two.
      const lines = chunk.split('\n').filter(Boolean);
      target.write(lines.map(prettyLine).join(''));
    },
    ...(typeof target.flush === 'function' ? { flush: (cb?: () => void) => target.flush!(cb) } : {}),
  };
}

/** One JSON record as one human line, newline included; anything not JSON passes as it is. */
export function prettyLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return `${json}\n`;
  }
  const head = [String(record['time'] ?? ''), String(record['level'] ?? '').toUpperCase().padEnd(5), String(record['msg'] ?? '')];
  const fields: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (OMITTED.has(key) || value === undefined) continue;
    if ((key === 'err' || key === 'error') && typeof value === 'object' && value !== null) fields.push(...errorFields(key, value as ErrorRecord));
    else fields.push(`${key}=${text(value)}`);
  }
  return `${[...head, ...fields].join(' ')}\n`;
}

interface ErrorRecord {
  readonly type?: string;
  readonly code?: string;
  readonly message?: string;
  readonly stack?: string;
  readonly cause?: ErrorRecord;
}

/** An error as `err.code=… err="message" cause="Type CODE: message"`; a stack (unexpected errors only) stays on the line, escaped. */
function errorFields(key: string, err: ErrorRecord): string[] {
  const out: string[] = [];
  if (err.code) out.push(`${key}.code=${err.code}`);
  out.push(`${key}=${text(err.message ?? err.type ?? '')}`);
  const causes: string[] = [];
  for (let c = err.cause, depth = 0; c && depth < 8; c = c.cause, depth++) causes.push(`${c.type ?? 'Error'}${c.code ? ` ${c.code}` : ''}: ${c.message ?? ''}`);
  if (causes.length > 0) out.push(`cause=${text(causes.join(' <- '))}`);
  const stack = err.stack ?? firstStack(err.cause);
  if (stack) out.push(`stack=${text(stack)}`);
  return out;
}

function firstStack(err: ErrorRecord | undefined): string | undefined {
  for (let c = err, depth = 0; c && depth < 8; c = c.cause, depth++) if (c.stack) return c.stack;
  return undefined;
}

/** A bare word stays bare; anything with a space, quote, `=` or newline is JSON-quoted, objects are JSON. */
function text(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=\\]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'object' && value !== null) return JSON.stringify(value);
  return String(value);
}

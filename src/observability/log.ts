/**
 * The logger (pino, JSON lines). Secrets are never passed to it; as a second wall, any top-level field named like a
 * secret is redacted. Errors are logged as `{ err }`: the `err` serializer keeps what helps debugging (class,
 * message, stack, string `code`, the chain of causes) and drops everything else an error may carry.
 */
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { logDestination } from './stdio.ts';

export const REDACTED_FIELDS = [
  'access_token',
  'refresh_token',
  'id_token',
  'device_code',
  'deviceCode',
  'user_code',
  'userCode',
  'code',
  'code_verifier',
  'codeVerifier',
  'client_secret',
  'password',
  'secret',
  'token',
  'jwe',
];

/** How many causes below the logged error are described; deeper ones are cut off. */
const CAUSE_DEPTH = 3;

/** A logged cause: what it is, never what it holds. */
export interface SerializedCause {
  type: string;
  message?: string;
  cause?: SerializedCause;
}

/** A logged error. */
export interface SerializedError extends SerializedCause {
  stack?: string;
  code?: string;
}

/**
 * pino's `err` serializer. Unlike pino's standard one it copies no arbitrary own property and no cause's payload:
 * oauth4webapi errors carry the upstream's response body in `cause` (which may hold tokens), and a response body is
 * not an Error, so only its type is kept. Any other non-Error value is logged as its type; a string as it is.
 */
export function serializeError(err: unknown): SerializedError | string {
  // a string is what the caller chose to write (e.g. `describe(err)`)
  if (typeof err === 'string') return err;
  if (!(err instanceof Error)) return { type: typeOf(err) };
  const out: SerializedError = { type: err.name, message: err.message };
  if (err.stack !== undefined) out.stack = err.stack;
  const code = 'code' in err ? err.code : undefined;
  if (typeof code === 'string') out.code = code;
  if (err.cause !== undefined) out.cause = serializeCause(err.cause, 1);
  return out;
}

function serializeCause(cause: unknown, depth: number): SerializedCause {
  if (!(cause instanceof Error)) return { type: typeOf(cause) };
  const out: SerializedCause = { type: cause.name, message: cause.message };
  if (cause.cause !== undefined && depth < CAUSE_DEPTH) out.cause = serializeCause(cause.cause, depth + 1);
  return out;
}

/** `Object`, `Response`, `string`...: a name for a value without its contents. */
function typeOf(value: unknown): string {
  if (typeof value !== 'object' || value === null) return typeof value;
  const ctor: unknown = Reflect.get(value, 'constructor');
  return typeof ctor === 'function' && ctor.name !== '' ? ctor.name : 'object';
}

/**
 * A JSON-lines logger at `level`, to `destination` (default: stdout, through {@link logDestination}, which never
 * blocks), with the `err` serializer and the redaction above.
 */
export function createLogger(level: string, destination: DestinationStream = logDestination()): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'devicegate' },
    serializers: { err: serializeError },
    redact: {
      // Top-level fields only: nested wildcards made every log call ~4 % of a flow start's CPU (BENCHMARKS.md), and
      // nothing nested is logged but `err`, whose serializer keeps no payload.
      paths: [...REDACTED_FIELDS],
      censor: '[redacted]',
    },
  };
  return pino(options, destination);
}

export type { Logger };

/** An error's class and message, for text that is not a log field (readiness details, wrapped messages). */
export function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

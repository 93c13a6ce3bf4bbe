/**
 * The logger (pino, JSON lines). Secrets are never passed to it; as a second wall, any field named like a secret is
 * redacted wherever it appears.
 */
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

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

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'devicegate' },
    redact: {
      // Top-level fields only: nested wildcards made every log call ~4 % of a flow start's CPU (BENCHMARKS.md), and
      // nothing nested is ever logged but `err`, which is always a string.
      paths: [...REDACTED_FIELDS],
      censor: '[redacted]',
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

export type { Logger };

/** An error's class and message for logs: never its cause's payload. */
export function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

/** A real pino logger (the gateway's own, with its serializers and redaction) writing its JSON lines into `lines`. */
import { Writable } from 'node:stream';
import { type Logger, createLogger } from '../../src/observability/log.ts';

export function capturingLogger(lines: string[], level = 'debug'): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return createLogger(level, sink);
}

/**
 * stdout and stderr that never block the process. pino's default destination (sonic-boom) flushes synchronously in a
 * `process.on('exit')` handler and retries `EAGAIN` with `Atomics.wait` until the pipe drains: with a reader that
 * stopped reading (`npm start | cat` after the reader died or hung) the main thread slept there for ever, so neither
 * SIGTERM nor the forced-exit timer could end it. Here every line goes through Node's own stream for fd 1, whose
 * writes to a pipe are queued by libuv instead of retried in place, and a line that cannot be queued is dropped.
 */
import type { Writable } from 'node:stream';
import type { DestinationStream } from 'pino';

/** Bytes a stalled reader may leave queued before further log lines are dropped (and then counted in one line). */
export const MAX_QUEUED_BYTES = 4 * 1024 * 1024;

/** The streams {@link survivingDeadPipe} already guards. */
const guarded = new WeakSet<Writable>();

/**
 * Keeps a dead pipe (EPIPE, the reader is gone) from crashing the process: an unhandled `error` on
 * `process.stdout` / `process.stderr` would throw. After one, writes to `out` are no-ops.
 */
export function survivingDeadPipe(out: Writable): Writable {
  if (guarded.has(out)) return out;
  guarded.add(out);
  // not only when nobody listens yet: a pipe() into `out` listens too, and rethrows when it is the last listener
  out.on('error', () => out.destroy());
  return out;
}

/**
 * A pino destination over `out` (default stdout) that never waits: lines are queued while the reader is slow, and
 * dropped once `maxQueued` bytes wait; the next line that fits is preceded by a warning that says how many were lost.
 */
export function logDestination(
  out: Writable = process.stdout,
  maxQueued = MAX_QUEUED_BYTES,
): DestinationStream {
  survivingDeadPipe(out);
  let dropped = 0;
  return {
    write(line: string): void {
      if (out.destroyed) return;
      if (out.writableLength > maxQueued) {
        dropped++;
        return;
      }
      if (dropped > 0) {
        out.write(
          `${JSON.stringify({ level: 40, time: Date.now(), service: 'devicegate', msg: 'log lines dropped: stdout was not read', dropped })}\n`,
        );
        dropped = 0;
      }
      out.write(line);
    },
  };
}

/**
 * Resolves once what was written to `out` has left the process, or after `timeoutMs`, whichever comes first: the
 * wait is on the event loop, so timers (the forced exit) still fire while a reader is stalled.
 */
export function drained(out: Writable, timeoutMs: number): Promise<void> {
  if (out.destroyed || out.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    // an empty write's callback runs once everything queued before it has been written (or the stream failed)
    out.write('', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

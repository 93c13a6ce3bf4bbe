/** What a started gateway must close, in reverse order of starting (docs/architecture.md, "Lifecycle"). */
import type { Logger } from 'pino';

export class Closers {
  readonly #log: Logger;
  readonly #stack: Array<{ what: string; close: () => Promise<void> }> = [];

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Registers `close` to run before everything registered earlier. */
  push(what: string, close: () => Promise<void>): void {
    this.#stack.push({ what, close });
  }

  /** Closes everything registered, newest first; a failure is logged and the rest still close. Idempotent. */
  async closeAll(): Promise<void> {
    for (let c = this.#stack.pop(); c !== undefined; c = this.#stack.pop()) {
      await c.close().catch((err: unknown) => this.#log.warn({ err, part: c?.what }, 'close failed'));
    }
  }
}

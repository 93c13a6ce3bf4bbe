/**
 * Runs device requests through the handler with bounded concurrency, for both transports. A request that finds every
 * slot taken waits (in arrival order) and is told when it gets one, so the transport can hold the broker back until
 * then (external: the PUBACK, and the broker keeps the request; embedded: aedes' `published` callback, and aedes stops
 * reading that device's connection).
 */
import type { Logger } from '../observability/log.ts';
import type { DeviceRequestHandler, IncomingRequest } from './types.ts';

/** Handler calls running at once per transport; more requests wait until a slot is free. */
export const MAX_IN_FLIGHT = 256;

export class RequestDispatcher {
  readonly #handler: DeviceRequestHandler;
  readonly #limit: number;
  readonly #log: Logger;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #waiting: Array<() => void> = [];

  /** `limit`: handler calls running at once (at least 1). Handler failures are logged on `log`, never thrown. */
  constructor(handler: DeviceRequestHandler, options: { limit: number; log: Logger }) {
    if (!Number.isInteger(options.limit) || options.limit < 1)
      throw new Error('limit must be a positive integer');
    this.#handler = handler;
    this.#limit = options.limit;
    this.#log = options.log;
  }

  /** Handler calls running now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Hands `request` to the handler now if a slot is free, else once one is. `onSlot` is called (synchronously) when
   * the request gets its slot, right after the handler was called. Never throws; a handler that throws or rejects is
   * logged.
   */
  dispatch(request: IncomingRequest, onSlot?: () => void): void {
    const start = () => {
      this.#run(request);
      onSlot?.();
    };
    if (this.#inFlight.size < this.#limit) start();
    else this.#waiting.push(start);
  }

  /**
   * Starts every waiting request (past the limit: the transport is closing and nothing new arrives) and resolves
   * once no handler call is running, including calls dispatched while it waits.
   */
  async drain(): Promise<void> {
    for (const start of this.#waiting.splice(0)) start();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  #run(request: IncomingRequest): void {
    const fail = (err: unknown) =>
      this.#log.error(
        { deviceId: request.deviceId, action: request.rawAction, err },
        'device request handler failed',
      );
    let running: Promise<void>;
    try {
      running = this.#handler(request).catch(fail);
    } catch (err) {
      // contracted not to throw; a synchronous throw must not take the transport's read loop down with it
      fail(err);
      this.#next();
      return;
    }
    this.#inFlight.add(running);
    void running.finally(() => {
      this.#inFlight.delete(running);
      this.#next();
    });
  }

  #next(): void {
    if (this.#inFlight.size < this.#limit) this.#waiting.shift()?.();
  }
}

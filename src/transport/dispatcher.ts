/**
 * Runs device requests through the handler with bounded concurrency, for both transports. A request that finds every
 * slot taken waits in a {@link FairQueue} (round robin over devices, in arrival order per device) and is told when it
 * gets one. The embedded broker holds the device back until then (aedes' `published` callback: aedes stops reading
 * that device's connection), so its queue needs no bound. The external broker cannot hold anything back without
 * stalling every device (see ./external.ts), so its queue is bounded and a request past the bound is refused.
 */
import type { Logger } from '../observability/log.ts';
import { FairQueue, type FairQueueLimits, type QueueRefusal } from './fair-queue.ts';
import type { DeviceRequestHandler, IncomingRequest, RequestLoad } from './types.ts';

/** Handler calls running at once per transport; more requests wait until a slot is free. */
export const MAX_IN_FLIGHT = 256;

const UNBOUNDED: FairQueueLimits = { capacity: Infinity, perDevice: Infinity };

export class RequestDispatcher {
  readonly #handler: DeviceRequestHandler;
  readonly #limit: number;
  readonly #log: Logger;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #waiting: FairQueue<() => void>;

  /**
   * `limit`: handler calls running at once (at least 1); `queue`: how many requests may wait for a slot (default: no
   * bound). Handler failures are logged on `log`, never thrown.
   */
  constructor(
    handler: DeviceRequestHandler,
    options: { limit: number; log: Logger; queue?: FairQueueLimits },
  ) {
    if (!Number.isInteger(options.limit) || options.limit < 1)
      throw new Error('limit must be a positive integer');
    this.#handler = handler;
    this.#limit = options.limit;
    this.#log = options.log;
    this.#waiting = new FairQueue(options.queue ?? UNBOUNDED);
  }

  /** Handler calls running now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** Handler calls running and requests waiting; saturated when the queue has no room even for a new device. */
  load(): RequestLoad {
    const saturated = this.#inFlight.size >= this.#limit && this.#waiting.full;
    const counts = `${this.#inFlight.size} requests in flight, ${this.#waiting.size} waiting`;
    return { saturated, detail: saturated ? `request queue saturated: ${counts}` : counts };
  }

  /**
   * Hands `request` to the handler now if a slot is free, else once one is. `onSlot` is called (synchronously) when
   * the request gets its slot, right after the handler was called. Returns why the request was refused when it
   * cannot wait (its device's share of the queue, or the whole queue, is full): then neither the handler nor `onSlot`
   * is ever called. Never throws; a handler that throws or rejects is logged.
   */
  dispatch(request: IncomingRequest, onSlot?: () => void): QueueRefusal | undefined {
    const start = () => {
      this.#run(request);
      onSlot?.();
    };
    if (this.#inFlight.size < this.#limit) start();
    else return this.#waiting.push(request.deviceId, start);
    return undefined;
  }

  /**
   * Starts every waiting request (past the limit: the transport is closing and nothing new arrives) and resolves
   * once no handler call is running, including calls dispatched while it waits.
   */
  async drain(): Promise<void> {
    for (let start = this.#waiting.shift(); start !== undefined; start = this.#waiting.shift()) start();
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

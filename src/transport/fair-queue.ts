/**
 * The requests that wait for a processing slot, queued per device and taken round robin over the devices: a device
 * with many waiting requests gets one turn per round like every other, so a flood from one device delays the others
 * by at most one request each round. Bounded twice: a device may have at most `perDevice` requests waiting (its
 * share), and all devices together at most `capacity`; past either bound a request is refused (the caller drops and
 * counts it). Order within one device is kept.
 */

/** Why a request was not queued: over its device's share, or the whole queue is full. */
export type QueueRefusal = 'device_share' | 'queue_full';

export interface FairQueueLimits {
  /** requests waiting over all devices */
  capacity: number;
  /** requests one device may have waiting */
  perDevice: number;
}

export class FairQueue<T> {
  readonly #limits: FairQueueLimits;
  /** each device's waiting requests; the Map's order is the round: the next turn is the first entry */
  readonly #queues = new Map<string, T[]>();
  #size = 0;

  constructor(limits: FairQueueLimits) {
    this.#limits = limits;
  }

  /** Requests waiting, over all devices. */
  get size(): number {
    return this.#size;
  }

  /** Whether a request of a device that has none waiting would be refused now. */
  get full(): boolean {
    return this.#size >= this.#limits.capacity;
  }

  /** Queues `item` behind `deviceId`'s earlier ones; returns why it was refused, or `undefined` when queued. */
  push(deviceId: string, item: T): QueueRefusal | undefined {
    const queue = this.#queues.get(deviceId);
    if ((queue?.length ?? 0) >= this.#limits.perDevice) return 'device_share';
    if (this.full) return 'queue_full';
    if (queue === undefined) this.#queues.set(deviceId, [item]);
    else queue.push(item);
    this.#size += 1;
    return undefined;
  }

  /** The oldest request of the device whose turn it is; that device then goes to the end of the round. */
  shift(): T | undefined {
    const next = this.#queues.entries().next();
    if (next.done === true) return undefined;
    const [deviceId, queue] = next.value;
    const item = queue.shift();
    this.#queues.delete(deviceId);
    if (queue.length > 0) this.#queues.set(deviceId, queue);
    this.#size -= 1;
    return item;
  }
}

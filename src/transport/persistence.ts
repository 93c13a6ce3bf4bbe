/**
 * The embedded broker's session store: aedes-persistence's in-memory persistence, minus one leak.
 *
 * aedes answers every PUBACK with `outgoingClearMessageId`, and the in-memory persistence creates an empty queue for
 * the client id when it has none and never deletes it — also for clean sessions, whose queue is never used. Every
 * device that ever acknowledged a reply would leave an entry (~100 B) behind for the life of the process (measured by
 * bench/scenarios/s4-pending-scale.ts). Only a client that ever had a message queued or updated (a persistent
 * session) can have anything to clear, so for every other client the call answers what the persistence would answer
 * (nothing found) without creating the entry.
 */
import MemoryPersistence from 'aedes-persistence/asyncPersistence.js';

type QueuedPacket = Parameters<MemoryPersistence['outgoingClearMessageId']>[1];

/** Unacknowledged QoS 1 messages kept per persistent session; see {@link DevicePersistence}. */
export const MAX_UNACKED_PER_CLIENT = 100;

/**
 * Passed to aedes as its `persistence` option; behaves as aedes' default in-memory persistence otherwise, with a cap:
 * a persistent session keeps at most `maxUnacked` unacknowledged messages. A message past the cap is not stored and
 * `onDrop` is told. For a connected client aedes then fails the delivery (it updates a message that is not there)
 * and closes the connection: a device that reads but never acknowledges is disconnected, and on reconnect it gets at
 * most `maxUnacked` messages again. An offline session simply keeps the oldest ones; the gateway keeps every flow's
 * result, which the device can ask for with `req/status`.
 */
export class DevicePersistence extends MemoryPersistence {
  /** client ids that ever had an outgoing message queued (the only ones with a queue to clear) */
  readonly #queued = new Set<string>();
  /** messages stored per client id and not yet acknowledged (the length of the base class's queue) */
  readonly #unacked = new Map<string, number>();
  readonly #maxUnacked: number;
  readonly #onDrop: (clientId: string) => void;

  constructor(o: { maxUnacked?: number; onDrop?: (clientId: string) => void } = {}) {
    super();
    this.#maxUnacked = o.maxUnacked ?? MAX_UNACKED_PER_CLIENT;
    this.#onDrop = o.onDrop ?? (() => undefined);
  }

  override outgoingEnqueue(sub: { clientId: string }, packet: QueuedPacket): Promise<void> {
    if (!this.#admit(sub.clientId)) return Promise.resolve();
    return super.outgoingEnqueue(sub, packet);
  }

  override outgoingEnqueueCombi(
    subs: ReadonlyArray<{ clientId: string }>,
    packet: QueuedPacket,
  ): Promise<void> {
    return super.outgoingEnqueueCombi(
      subs.filter((sub) => this.#admit(sub.clientId)),
      packet,
    );
  }

  /** Counts one more stored message for `clientId`, or tells `onDrop` and refuses it when the cap is reached. */
  #admit(clientId: string): boolean {
    const stored = this.#unacked.get(clientId) ?? 0;
    if (stored >= this.#maxUnacked) {
      this.#onDrop(clientId);
      return false;
    }
    this.#queued.add(clientId);
    this.#unacked.set(clientId, stored + 1);
    return true;
  }

  override outgoingUpdate(client: { id: string }, packet: QueuedPacket): Promise<void> {
    this.#queued.add(client.id);
    return super.outgoingUpdate(client, packet);
  }

  override outgoingClearMessageId(
    client: { id: string },
    packet: QueuedPacket,
  ): Promise<QueuedPacket | undefined> {
    if (!this.#queued.has(client.id)) return Promise.resolve(undefined);
    return super.outgoingClearMessageId(client, packet).then((cleared) => {
      const stored = this.#unacked.get(client.id) ?? 0;
      if (cleared === undefined) return cleared;
      if (stored > 1) this.#unacked.set(client.id, stored - 1);
      else this.#unacked.delete(client.id);
      return cleared;
    });
  }
}

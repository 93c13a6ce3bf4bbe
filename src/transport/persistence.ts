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

/** Passed to aedes as its `persistence` option; behaves as aedes' default in-memory persistence otherwise. */
export class DevicePersistence extends MemoryPersistence {
  /** client ids that ever had an outgoing message queued (the only ones with a queue to clear) */
  readonly #queued = new Set<string>();

  override outgoingEnqueue(sub: { clientId: string }, packet: QueuedPacket): Promise<void> {
    this.#queued.add(sub.clientId);
    return super.outgoingEnqueue(sub, packet);
  }

  override outgoingEnqueueCombi(
    subs: ReadonlyArray<{ clientId: string }>,
    packet: QueuedPacket,
  ): Promise<void> {
    for (const sub of subs) this.#queued.add(sub.clientId);
    return super.outgoingEnqueueCombi(subs, packet);
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
    return super.outgoingClearMessageId(client, packet);
  }
}

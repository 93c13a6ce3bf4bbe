/**
 * A minimal local declaration of aedes-persistence 11's in-memory persistence in its promise form
 * (`asyncPersistence.js`, the class its default export wraps in a callback layer; aedes 1.x awaits every call). Only
 * the members devicegate overrides or calls are listed. The package's own `types/asyncPersistence.d.ts` is not used
 * because it types `outgoingClearMessageId` as always finding a packet, while the implementation resolves
 * `undefined` when the message id is unknown.
 */
declare module 'aedes-persistence/asyncPersistence.js' {
  /** The fields of aedes' outgoing packets the persistence keys on. */
  interface QueuedPacket {
    messageId?: number;
  }

  class MemoryPersistence {
    constructor(options?: { broadcastSubscriptions?: boolean });
    /** aedes checks that this is an `async` function, then awaits it once with the broker. */
    setup(broker: unknown): Promise<void>;
    outgoingEnqueue(sub: { clientId: string }, packet: QueuedPacket): Promise<void>;
    outgoingEnqueueCombi(subs: ReadonlyArray<{ clientId: string }>, packet: QueuedPacket): Promise<void>;
    outgoingUpdate(client: { id: string }, packet: QueuedPacket): Promise<void>;
    /** Removes and resolves the queued packet with `packet.messageId`; `undefined` when there is none. */
    outgoingClearMessageId(client: { id: string }, packet: QueuedPacket): Promise<QueuedPacket | undefined>;
    destroy(): Promise<void>;
  }

  export = MemoryPersistence;
}

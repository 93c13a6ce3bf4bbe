/**
 * The store contract. Two implementations behave the same, proven by one conformance suite
 * (test/contract/store.contract.ts): `MemoryStore` (the readable reference, one instance only) and `RedisStore`
 * (every instance of a deployment shares it; each multi-key transition is one Lua script).
 *
 * Atomicity: every method is one atomic step of the store. In particular `create` writes the flow, counts it against
 * the device's cap, reserves its user code and schedules it together, so a crash never leaves a flow without its
 * schedule entry or a user code pointing at nothing. Concurrent writers of one flow are ordered by the version
 * (compare-and-set, {@link FlowStore.update}): the loser gets `conflict`, reads again and re-applies its event.
 */
import type { Flow } from '../core/flow.ts';

export interface Versioned {
  flow: Flow;
  /** Incremented by every successful write; the compare-and-set token of {@link FlowStore.update}. */
  version: number;
}

export interface CreateOptions {
  now: number;
  maxLive: number;
  due?: number | undefined;
  userCode?: { hash: string; ttlMs: number } | undefined;
}

export type CreateResult =
  | { status: 'created'; version: number }
  /** A flow with the same (deviceId, rid) already exists: the request is a repeat. */
  | { status: 'exists'; flow: Flow; version: number }
  /** The device already has `maxLive` unfinished flows. */
  | { status: 'limit' }
  /** `userCode` was given and another live flow holds that code: nothing was written; draw another code. */
  | { status: 'code_taken' };

export type UpdateResult =
  | { status: 'ok'; version: number }
  /** Someone wrote first: read again and re-apply the event. */
  | { status: 'conflict' }
  /** The flow is gone (expired or never existed). */
  | { status: 'missing' }
  /** The write would move a finished flow backwards (lower state rank, or one result replaced by another). */
  | { status: 'regress' }
  /** A lease token was given and the lease is no longer held with it. */
  | { status: 'lease_lost' };

/** A device was revoked (`revoked: true`) or restored, as every instance on the store hears it. */
export interface RevocationChange {
  deviceId: string;
  revoked: boolean;
}

/** A subscription to {@link FlowStore.watchRevocations}; `close` ends it. */
export interface RevocationWatch {
  close(): Promise<void>;
}

/** How long a finished or expired flow stays readable after `expiresAt`, to report `expired_token`. */
export const GRACE_MS = 30_000;

export interface FlowStore {
  /**
   * Atomically creates the flow unless one exists for the same (deviceId, rid). Of concurrent creates exactly one
   * wins. Refuses with `limit` when the device already has `maxLive` pending flows. The record expires
   * `GRACE_MS` after `flow.expiresAt`. With `userCode` it reserves that user-code hash for the new flow (for `ttlMs`)
   * — `code_taken`, and nothing written, when another flow holds it. On `created` and `exists` the flow is scheduled
   * at `due` unless it already has an entry; a repeat (`exists`) reserves nothing, a refusal (`limit`, `code_taken`)
   * writes nothing.
   */
  create(flow: Flow, opts: CreateOptions): Promise<CreateResult>;

  /**
   * How many pending flows of the device count against its cap at `now` (those not past `expiresAt`), as `create`
   * counts them. A read for an early refusal only: `create` stays the authority on the cap.
   */
  liveCount(deviceId: string, now: number): Promise<number>;

  /** The flow of (deviceId, rid), or `undefined` when there is none (never created, or its record expired). */
  get(deviceId: string, rid: string): Promise<Versioned | undefined>;

  /**
   * Compare-and-set. Writes `next` only if the stored version is `version`, the state does not move backwards
   * (pending → result → acked; one result never replaces another), and — when `leaseToken` is given — the flow's lease
   * is held with that token and has not run out at `now`. Keeps the expiry. Removes the flow from its device's live
   * set once it is finished. Does not touch the schedule: see {@link schedule}.
   */
  update(next: Flow, version: number, opts: { now: number; leaseToken?: string }): Promise<UpdateResult>;

  /** Sets (`due` a number) or clears (`undefined`) when the scheduler next visits the flow. Idempotent. */
  schedule(deviceId: string, rid: string, due: number | undefined): Promise<void>;

  /**
   * Atomically takes up to `limit` flows due at `now` and pushes each one's due time to `now + leaseMs`, so no other
   * instance takes them within the lease. Returns their ids (`deviceId/rid`), earliest first.
   */
  claimDue(now: number, leaseMs: number, limit: number): Promise<Array<{ deviceId: string; rid: string }>>;

  /** The earliest due time in the schedule, or `undefined` when it is empty. */
  nextDue(): Promise<number | undefined>;

  /** Takes the flow's lease with `token` unless another token holds it and it has not run out. */
  acquireLease(deviceId: string, rid: string, token: string, now: number, leaseMs: number): Promise<boolean>;

  /** Gives the lease up if (and only if) `token` holds it. */
  releaseLease(deviceId: string, rid: string, token: string): Promise<void>;

  /** The flow a user-code hash points at. */
  findUserCode(hash: string): Promise<{ deviceId: string; rid: string } | undefined>;

  /** Forgets a user-code hash (the code is used up or dead). */
  releaseUserCode(hash: string): Promise<void>;

  /** Stores a one-time value (e.g. an OAuth `state`) for `ttlMs`. */
  putOnce(hash: string, value: string, ttlMs: number): Promise<void>;

  /** Reads and deletes a one-time value atomically: of two concurrent takers at most one gets it. */
  takeOnce(hash: string): Promise<string | undefined>;

  /**
   * Reads a one-time value and leaves it in place (`undefined` once taken, deleted or past its ttl): for a value
   * that must outlive a failed attempt, such as the OAuth `state` until its callback has finished.
   */
  getOnce(hash: string): Promise<string | undefined>;

  /** Forgets a one-time value; nothing happens when there is none. */
  deleteOnce(hash: string): Promise<void>;

  /**
   * The rids of the device's pending flows that have not passed `expiresAt` at `now` (the ones {@link liveCount}
   * counts), in no particular order.
   */
  liveFlows(deviceId: string, now: number): Promise<string[]>;

  /**
   * Adds the device to the revoked set (no expiry: it stays until {@link restoreDevice}; on Redis it survives
   * restarts) and tells every watcher on the store, on every instance, even when it was revoked already (a second
   * revoke kicks again). Returns whether the set changed.
   */
  revokeDevice(deviceId: string): Promise<boolean>;

  /** Removes the device from the revoked set and tells every watcher. Returns whether the set changed. */
  restoreDevice(deviceId: string): Promise<boolean>;

  /** Whether the device is in the revoked set. */
  isRevoked(deviceId: string): Promise<boolean>;

  /** Every revoked device id, sorted. */
  revokedDevices(): Promise<string[]>;

  /**
   * Calls `listener` for every later revoke and restore on the store, made by any instance (Redis: pub/sub, at most
   * once — a change made while the subscription is down is not replayed, so the revoked set stays the authority;
   * memory: in-process). Resolves once the subscription is in place.
   */
  watchRevocations(listener: (change: RevocationChange) => void): Promise<RevocationWatch>;

  /** Throws {@link UnavailableError} when the store cannot be reached. */
  ping(): Promise<void>;

  /** Releases what the store opened itself (a client passed in is left open). */
  close(): Promise<void>;
}

/** Turns flows into stored strings and back. Secrets are sealed; see `src/store/codec.ts`. */
export interface FlowCodec {
  encode(flow: Flow): string;
  decode(deviceId: string, rid: string, stored: string): Flow;
}

/**
 * Counters with a lifetime, behind the code-entry page's failed-entry limits (src/service/code-entry-guard.ts).
 * `MemoryAttemptCounter` counts for one instance; `RedisAttemptCounter` for every instance on one Redis.
 */
export interface AttemptCounter {
  /**
   * Adds `by` to the counter `key` and returns its count after the change. Atomic: of concurrent adds (from every
   * instance sharing the counter) each one counts and each sees a different count. The counter lives `ttlMs` after
   * its last change; a count that drops to 0 or below may be forgotten. Throws {@link UnavailableError} when the
   * counter cannot be reached.
   */
  add(key: string, by: 1 | -1, ttlMs: number): Promise<number>;
}

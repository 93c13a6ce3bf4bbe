/**
 * In-memory store: the readable reference of the store contract (see ./types.ts) and the default for a single
 * instance. Behaves like the Redis store, including expiry, leases and the refusal to move a flow backwards, so the
 * same conformance suite runs on both. Nothing survives a restart.
 */
import type { Flow } from '../core/flow.ts';
import { stateRank } from '../core/flow.ts';
import type { Clock } from '../core/clock.ts';
import type {
  CreateOptions,
  CreateResult,
  FlowCodec,
  FlowStore,
  RevocationChange,
  RevocationWatch,
  UpdateResult,
  Versioned,
} from './types.ts';
import { GRACE_MS } from './types.ts';

interface Record {
  version: number;
  state: Flow['state'];
  body: string;
  /** the record disappears after this instant (ms, store clock) */
  deadline: number;
  lease?: { token: string; until: number };
}

interface Expiring {
  value: string;
  deadline: number;
}

/** A min-heap of (due, id) with lazy deletion: entries whose due no longer matches `due` are skipped. */
class DueHeap {
  readonly due = new Map<string, number>();
  #heap: Array<[number, string]> = [];

  set(id: string, at: number | undefined): void {
    if (at === undefined) {
      this.due.delete(id);
      return;
    }
    this.due.set(id, at);
    this.#push([at, id]);
  }

  /** Earliest live entry. */
  peek(): [number, string] | undefined {
    for (;;) {
      const top = this.#heap[0];
      if (top === undefined) return undefined;
      if (this.due.get(top[1]) === top[0]) return top;
      this.#pop();
    }
  }

  take(): [number, string] | undefined {
    const top = this.peek();
    if (top !== undefined) this.#pop();
    return top;
  }

  #push(item: [number, string]): void {
    const h = this.#heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (less(h[parent]!, h[i]!)) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  #pop(): void {
    const h = this.#heap;
    const last = h.pop();
    if (last === undefined || h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && less(h[l]!, h[m]!)) m = l;
      if (r < h.length && less(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}

function less(a: [number, string], b: [number, string]): boolean {
  return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
}

const fid = (deviceId: string, rid: string) => `${deviceId}/${rid}`;
function splitFid(id: string): { deviceId: string; rid: string } {
  const i = id.indexOf('/');
  return { deviceId: id.slice(0, i), rid: id.slice(i + 1) };
}

export interface MemoryStoreOptions {
  codec: FlowCodec;
  clock: Clock;
  /** How long a record stays after `expiresAt` (default {@link GRACE_MS}). */
  graceMs?: number;
}

export class MemoryStore implements FlowStore {
  readonly #codec: FlowCodec;
  readonly #clock: Clock;
  readonly #graceMs: number;
  readonly #flows = new Map<string, Record>();
  /** deviceId → rid → expiresAt of its pending flows */
  readonly #live = new Map<string, Map<string, number>>();
  readonly #schedule = new DueHeap();
  readonly #userCodes = new Map<string, Expiring>();
  readonly #once = new Map<string, Expiring>();
  readonly #revoked = new Set<string>();
  readonly #watchers = new Set<(change: RevocationChange) => void>();
  #sweeps = 0;

  constructor(options: MemoryStoreOptions) {
    this.#codec = options.codec;
    this.#clock = options.clock;
    this.#graceMs = options.graceMs ?? GRACE_MS;
  }

  async create(flow: Flow, opts: CreateOptions): Promise<CreateResult> {
    this.#sweep();
    const id = fid(flow.deviceId, flow.rid);
    // The schedule entry (kept when one exists) is added only for a stored flow: a refused create leaves none.
    const scheduleOnce = () => {
      if (opts.due !== undefined && !this.#schedule.due.has(id)) this.#schedule.set(id, opts.due);
    };
    const existing = this.#record(id);
    if (existing !== undefined) {
      scheduleOnce();
      return {
        status: 'exists',
        flow: this.#codec.decode(flow.deviceId, flow.rid, existing.body),
        version: existing.version,
      };
    }
    const live = this.#liveOf(flow.deviceId, opts.now);
    if (live.size >= opts.maxLive) return { status: 'limit' };
    if (opts.userCode !== undefined) {
      if (this.#alive(this.#userCodes, opts.userCode.hash) !== undefined) return { status: 'code_taken' };
      this.#userCodes.set(opts.userCode.hash, {
        value: id,
        deadline: this.#clock.now() + opts.userCode.ttlMs,
      });
    }
    const ttl = flow.expiresAt + this.#graceMs - opts.now;
    this.#flows.set(id, {
      version: 1,
      state: flow.state,
      body: this.#codec.encode(flow),
      deadline: this.#clock.now() + ttl,
    });
    if (flow.state === 'pending') live.set(flow.rid, flow.expiresAt);
    scheduleOnce();
    return { status: 'created', version: 1 };
  }

  async liveCount(deviceId: string, now: number): Promise<number> {
    const live = this.#live.get(deviceId);
    if (live === undefined) return 0;
    let count = 0;
    for (const expiresAt of live.values()) if (expiresAt >= now) count++;
    return count;
  }

  async get(deviceId: string, rid: string): Promise<Versioned | undefined> {
    const r = this.#record(fid(deviceId, rid));
    if (r === undefined) return undefined;
    return { flow: this.#codec.decode(deviceId, rid, r.body), version: r.version };
  }

  async update(
    next: Flow,
    version: number,
    opts: { now: number; leaseToken?: string },
  ): Promise<UpdateResult> {
    const r = this.#record(fid(next.deviceId, next.rid));
    if (r === undefined) return { status: 'missing' };
    if (r.version !== version) return { status: 'conflict' };
    if (opts.leaseToken !== undefined && (r.lease?.token !== opts.leaseToken || r.lease.until < opts.now)) {
      return { status: 'lease_lost' };
    }
    const from = stateRank(r.state);
    const to = stateRank(next.state);
    if (to < from || (from === 1 && to === 1 && next.state !== r.state)) return { status: 'regress' };
    r.version += 1;
    r.state = next.state;
    r.body = this.#codec.encode(next);
    if (to > 0) this.#live.get(next.deviceId)?.delete(next.rid);
    return { status: 'ok', version: r.version };
  }

  async schedule(deviceId: string, rid: string, due: number | undefined): Promise<void> {
    this.#schedule.set(fid(deviceId, rid), due);
  }

  async claimDue(
    now: number,
    leaseMs: number,
    limit: number,
  ): Promise<Array<{ deviceId: string; rid: string }>> {
    const taken: string[] = [];
    while (taken.length < limit) {
      const top = this.#schedule.peek();
      if (top === undefined || top[0] > now) break;
      this.#schedule.take();
      taken.push(top[1]);
    }
    // Re-scheduled only after the loop: with a lease of 0 a flow would otherwise be taken twice in one call.
    for (const id of taken) this.#schedule.set(id, now + leaseMs);
    return taken.map(splitFid);
  }

  async nextDue(): Promise<number | undefined> {
    return this.#schedule.peek()?.[0];
  }

  async acquireLease(
    deviceId: string,
    rid: string,
    token: string,
    now: number,
    leaseMs: number,
  ): Promise<boolean> {
    const r = this.#record(fid(deviceId, rid));
    if (r === undefined) return false;
    if (r.lease !== undefined && r.lease.token !== token && r.lease.until >= now) return false;
    r.lease = { token, until: now + leaseMs };
    return true;
  }

  async releaseLease(deviceId: string, rid: string, token: string): Promise<void> {
    const r = this.#record(fid(deviceId, rid));
    if (r?.lease?.token === token) delete r.lease;
  }

  async findUserCode(hash: string): Promise<{ deviceId: string; rid: string } | undefined> {
    const v = this.#alive(this.#userCodes, hash);
    return v === undefined ? undefined : splitFid(v);
  }

  async releaseUserCode(hash: string): Promise<void> {
    this.#userCodes.delete(hash);
  }

  async putOnce(hash: string, value: string, ttlMs: number): Promise<void> {
    this.#once.set(hash, { value, deadline: this.#clock.now() + ttlMs });
  }

  async takeOnce(hash: string): Promise<string | undefined> {
    const v = this.#alive(this.#once, hash);
    this.#once.delete(hash);
    return v;
  }

  async getOnce(hash: string): Promise<string | undefined> {
    return this.#alive(this.#once, hash);
  }

  async deleteOnce(hash: string): Promise<void> {
    this.#once.delete(hash);
  }

  async liveFlows(deviceId: string, now: number): Promise<string[]> {
    const live = this.#live.get(deviceId);
    if (live === undefined) return [];
    return [...live].filter(([, expiresAt]) => expiresAt >= now).map(([rid]) => rid);
  }

  async revokeDevice(deviceId: string): Promise<boolean> {
    const changed = !this.#revoked.has(deviceId);
    this.#revoked.add(deviceId);
    this.#tell({ deviceId, revoked: true });
    return changed;
  }

  async restoreDevice(deviceId: string): Promise<boolean> {
    const changed = this.#revoked.delete(deviceId);
    this.#tell({ deviceId, revoked: false });
    return changed;
  }

  async isRevoked(deviceId: string): Promise<boolean> {
    return this.#revoked.has(deviceId);
  }

  async revokedDevices(): Promise<string[]> {
    return [...this.#revoked].sort();
  }

  async watchRevocations(listener: (change: RevocationChange) => void): Promise<RevocationWatch> {
    // a wrapper of its own, so the same listener watched twice is two watches
    const watcher = (change: RevocationChange) => listener(change);
    this.#watchers.add(watcher);
    return { close: async () => void this.#watchers.delete(watcher) };
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}

  /** Tells the watchers after the caller's step has finished, as Redis pub/sub would. */
  #tell(change: RevocationChange): void {
    for (const watcher of this.#watchers) queueMicrotask(() => watcher(change));
  }

  #record(id: string): Record | undefined {
    const r = this.#flows.get(id);
    if (r !== undefined && r.deadline <= this.#clock.now()) {
      this.#flows.delete(id);
      return undefined;
    }
    return r;
  }

  #alive(map: Map<string, Expiring>, key: string): string | undefined {
    const e = map.get(key);
    if (e === undefined) return undefined;
    if (e.deadline <= this.#clock.now()) {
      map.delete(key);
      return undefined;
    }
    return e.value;
  }

  #liveOf(deviceId: string, now: number): Map<string, number> {
    let live = this.#live.get(deviceId);
    if (live === undefined) {
      live = new Map();
      this.#live.set(deviceId, live);
    }
    for (const [rid, expiresAt] of live) if (expiresAt < now) live.delete(rid);
    return live;
  }

  /** Drops expired records now and then, so memory stays flat without a timer. */
  #sweep(): void {
    if (++this.#sweeps % 1024 !== 0) return;
    const now = this.#clock.now();
    for (const [id, r] of this.#flows) if (r.deadline <= now) this.#flows.delete(id);
    for (const [k, e] of this.#userCodes) if (e.deadline <= now) this.#userCodes.delete(k);
    for (const [k, e] of this.#once) if (e.deadline <= now) this.#once.delete(k);
    for (const [d, live] of this.#live) {
      for (const [rid, exp] of live) if (exp < now) live.delete(rid);
      if (live.size === 0) this.#live.delete(d);
    }
  }
}

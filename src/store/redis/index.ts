/**
 * Redis store: the store contract (../types.ts) on a Redis shared by every instance, behaving like the reference
 * `MemoryStore` (../memory.ts); test/contract/store.contract.ts proves both the same.
 *
 * Keys (`<p>` is the configured prefix, e.g. `devicegate:`; `<...>` is a value; `{...}` is a literal Redis hash tag
 * that keeps a flow's keys together). Names are short on purpose: Redis memory per pending flow is a documented
 * budget (BENCHMARKS.md, scenario 4, has the measured cost and its breakdown).
 *
 *   <p>f:{<deviceId>}:<rid>  hash        v version, s state, b codec body (secrets sealed), t lease token,
 *                                        u lease until (ms); expires `graceMs` after the flow's expiresAt
 *   <p>d:{<deviceId>}        sorted set  rid → expiresAt of the device's pending flows (the live-flow cap);
 *                                        expires once its last member is past expiresAt
 *   <p>sched                 sorted set  `<deviceId>/<rid>` → due (ms): when the scheduler next visits the flow
 *   <p>uc:<hash>             string      `<deviceId>/<rid>` a user code's keyed hash points at (SET NX PX)
 *   <p>once:<hash>           string      a one-time value such as an OAuth `state` (SET PX, taken with GETDEL)
 *   <p>revoked               set         revoked device ids (no expiry: until restored)
 *
 * Channel `<p>revocations` carries every revoke (`1<deviceId>`) and restore (`0<deviceId>`) to each instance's
 * watcher (a connection of its own, duplicated from the borrowed client and closed by {@link RedisStore.close}).
 *
 * A new flow, its user-code reservation and its schedule entry are written by one script (`create-4.lua`), so a flow
 * start is one round trip and no crash can leave half of it done. Time always comes from the caller (`now` as ARGV,
 * never Redis TIME inside a script) and TTLs are relative (`expiresAt + graceMs − now`), so the gateway's clock is the
 * only time source for decisions; on Redis that clock is the server's time, sampled by ./clock.ts, so every instance
 * passes the same `now`.
 *
 * Every failure to reach Redis surfaces as {@link UnavailableError}; the flow service answers
 * `temporarily_unavailable`. Open the client with {@link RedisStore.clientOptions} so such calls fail fast.
 */
import type { Redis, RedisOptions } from 'ioredis';
import { UnavailableError } from '../../core/errors.ts';
import type { Flow } from '../../core/flow.ts';
import type {
  CreateOptions,
  CreateResult,
  FlowCodec,
  FlowStore,
  RevocationChange,
  RevocationWatch,
  UpdateResult,
  Versioned,
} from '../types.ts';
import { GRACE_MS } from '../types.ts';
import { run, scripts } from './scripts.ts';

export interface RedisStoreOptions {
  /** Borrowed: {@link RedisStore.close} leaves it open. Best opened with {@link RedisStore.clientOptions}. */
  redis: Redis;
  /** Prefix of every key (e.g. `devicegate:`). Must not contain `{` or `}`: the device id is the hash tag. */
  keyPrefix: string;
  codec: FlowCodec;
  /** How long a record stays after `expiresAt` (default {@link GRACE_MS}). */
  graceMs?: number;
  /** How long {@link RedisStore.ping} waits for an answer (default 1000 ms). */
  pingTimeoutMs?: number;
}

/** Client-side deadlines of {@link RedisStore.clientOptions}. */
const COMMAND_TIMEOUT_MS = 1000;
const CONNECT_TIMEOUT_MS = 2000;
const MAX_RECONNECT_DELAY_MS = 2000;
/** Deadline of the revocation watcher's SUBSCRIBE ({@link RedisStore.watchRevocations}). */
const SUBSCRIBE_TIMEOUT_MS = 5000;

export class RedisStore implements FlowStore {
  readonly #redis: Redis;
  readonly #p: string;
  readonly #codec: FlowCodec;
  readonly #graceMs: number;
  readonly #pingTimeoutMs: number;
  /** the connections {@link watchRevocations} opened */
  readonly #subscribers = new Set<Redis>();

  constructor(options: RedisStoreOptions) {
    if (/[{}]/.test(options.keyPrefix)) {
      throw new Error('the Redis key prefix must not contain { or }: the device id is the hash tag');
    }
    this.#redis = options.redis;
    this.#p = options.keyPrefix;
    this.#codec = options.codec;
    this.#graceMs = options.graceMs ?? GRACE_MS;
    this.#pingTimeoutMs = options.pingTimeoutMs ?? 1000;
  }

  /**
   * The ioredis options to open the gateway's client with: while Redis is down a command fails within about a
   * second instead of waiting in the offline queue (queued commands are dropped after one reconnect retry; short
   * command and connect deadlines), and reconnects back off exponentially up to 2 s, so the store recovers without a
   * restart.
   * A command that timed out while queued may still run after the reconnect; every write is idempotent or
   * compare-and-set, so a late run is harmless.
   */
  static clientOptions(): Omit<RedisOptions, 'replyMapping'> {
    return {
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      // The commands one turn of the event loop issues (a batch of device requests, of scheduler visits) leave in one
      // socket write. Measured with bench/compare.ts against each call being its own write: −9 % gateway CPU per
      // round trip (cancel variant) and −14 % (pending); BENCHMARKS.md has the runs.
      enableAutoPipelining: true,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      retryStrategy: (times) => Math.min(MAX_RECONNECT_DELAY_MS, 50 * 2 ** Math.min(times, 6)),
    };
  }

  #flowKey(deviceId: string, rid: string): string {
    return `${this.#p}f:{${deviceId}}:${rid}`;
  }

  #deviceKey(deviceId: string): string {
    return `${this.#p}d:{${deviceId}}`;
  }

  #ucKey(hash: string): string {
    return `${this.#p}uc:${hash}`;
  }

  get #revokedKey(): string {
    return `${this.#p}revoked`;
  }

  get #revocationChannel(): string {
    return `${this.#p}revocations`;
  }

  get #schedKey(): string {
    return `${this.#p}sched`;
  }

  /**
   * Atomic (`create-4.lua`): of concurrent creates of one (deviceId, rid) exactly one is `created`. The same script
   * reserves the user code and writes the schedule entry (`due`, ZADD NX; none on `limit` or `code_taken`).
   */
  async create(flow: Flow, opts: CreateOptions): Promise<CreateResult> {
    const uc = opts.userCode;
    const keys = [
      this.#flowKey(flow.deviceId, flow.rid),
      this.#deviceKey(flow.deviceId),
      this.#schedKey,
      this.#ucKey(uc?.hash ?? ''),
    ];
    const args: Array<string | number> = [
      flow.rid,
      flow.state,
      this.#codec.encode(flow),
      opts.now,
      flow.expiresAt,
      this.#graceMs,
      opts.maxLive,
      opts.due ?? '',
      sid(flow.deviceId, flow.rid),
      uc === undefined ? '' : '1',
      uc === undefined ? 0 : pxOf(uc.ttlMs),
    ];
    const reply = await this.#do(() => run(this.#redis, scripts.create, keys, args));
    return createResult(reply, (body) => this.#codec.decode(flow.deviceId, flow.rid, body));
  }

  /** One HMGET; `undefined` when the record never existed or expired. */
  async get(deviceId: string, rid: string): Promise<Versioned | undefined> {
    const [version, body] = await this.#do(() => this.#redis.hmget(this.#flowKey(deviceId, rid), 'v', 'b'));
    if (version == null || body == null) return undefined;
    return { flow: this.#codec.decode(deviceId, rid, body), version: Number(version) };
  }

  /** Atomic compare-and-set (`update-2.lua`); keeps the record's TTL. */
  async update(
    next: Flow,
    version: number,
    opts: { now: number; leaseToken?: string },
  ): Promise<UpdateResult> {
    const args: Array<string | number> = [next.rid, version, next.state, this.#codec.encode(next), opts.now];
    if (opts.leaseToken !== undefined) args.push(opts.leaseToken);
    const reply = await this.#do(() =>
      run(
        this.#redis,
        scripts.update,
        [this.#flowKey(next.deviceId, next.rid), this.#deviceKey(next.deviceId)],
        args,
      ),
    );
    return updateResult(reply);
  }

  /** ZADD (`due` set) or ZREM (`undefined`). */
  async schedule(deviceId: string, rid: string, due: number | undefined): Promise<void> {
    const member = sid(deviceId, rid);
    await this.#do(() =>
      due === undefined
        ? this.#redis.zrem(this.#schedKey, member)
        : this.#redis.zadd(this.#schedKey, due, member),
    );
  }

  /** Atomic (`claim-1.lua`). */
  async claimDue(
    now: number,
    leaseMs: number,
    limit: number,
  ): Promise<Array<{ deviceId: string; rid: string }>> {
    if (limit <= 0) return [];
    const reply = await this.#do(() =>
      run(this.#redis, scripts.claim, [this.#schedKey], [now, leaseMs, limit]),
    );
    if (!Array.isArray(reply)) throw unexpected('claim-1.lua', reply);
    return reply.map((member: unknown) => {
      if (typeof member !== 'string') throw unexpected('claim-1.lua', reply);
      return splitSid(member);
    });
  }

  /** ZCOUNT of the device's live set from `now` (a member counts up to and including its expiresAt). */
  async liveCount(deviceId: string, now: number): Promise<number> {
    return this.#do(() => this.#redis.zcount(this.#deviceKey(deviceId), now, '+inf'));
  }

  async nextDue(): Promise<number | undefined> {
    const reply = await this.#do(() => this.#redis.zrange(this.#schedKey, '0', '0', 'WITHSCORES'));
    const score = reply[1];
    return score === undefined ? undefined : Number(score);
  }

  /** Atomic (`lease-1.lua`); `false` also when the flow does not exist. */
  async acquireLease(
    deviceId: string,
    rid: string,
    token: string,
    now: number,
    leaseMs: number,
  ): Promise<boolean> {
    const reply = await this.#do(() =>
      run(this.#redis, scripts.lease, [this.#flowKey(deviceId, rid)], [token, now, leaseMs]),
    );
    return reply === 1;
  }

  /** Atomic compare-and-delete (`unlease-1.lua`). */
  async releaseLease(deviceId: string, rid: string, token: string): Promise<void> {
    await this.#do(() => run(this.#redis, scripts.unlease, [this.#flowKey(deviceId, rid)], [token]));
  }

  async findUserCode(hash: string): Promise<{ deviceId: string; rid: string } | undefined> {
    const value = await this.#do(() => this.#redis.get(this.#ucKey(hash)));
    return value == null ? undefined : splitSid(value);
  }

  async releaseUserCode(hash: string): Promise<void> {
    await this.#do(() => this.#redis.del(this.#ucKey(hash)));
  }

  /** SET PX (replaces an earlier value under the same hash). */
  async putOnce(hash: string, value: string, ttlMs: number): Promise<void> {
    await this.#do(() => this.#redis.set(`${this.#p}once:${hash}`, value, 'PX', pxOf(ttlMs)));
  }

  /** GETDEL: of concurrent takers at most one gets the value. */
  async takeOnce(hash: string): Promise<string | undefined> {
    const value = await this.#do(() => this.#redis.getdel(`${this.#p}once:${hash}`));
    return value ?? undefined;
  }

  async getOnce(hash: string): Promise<string | undefined> {
    const value = await this.#do(() => this.#redis.get(`${this.#p}once:${hash}`));
    return value ?? undefined;
  }

  async deleteOnce(hash: string): Promise<void> {
    await this.#do(() => this.#redis.del(`${this.#p}once:${hash}`));
  }

  /** ZRANGE BYSCORE of the device's live set from `now`. */
  async liveFlows(deviceId: string, now: number): Promise<string[]> {
    return this.#do(() => this.#redis.zrangebyscore(this.#deviceKey(deviceId), now, '+inf'));
  }

  /** SADD and PUBLISH in one MULTI. */
  revokeDevice(deviceId: string): Promise<boolean> {
    return this.#changeRevoked({ deviceId, revoked: true });
  }

  /** SREM and PUBLISH in one MULTI. */
  restoreDevice(deviceId: string): Promise<boolean> {
    return this.#changeRevoked({ deviceId, revoked: false });
  }

  async isRevoked(deviceId: string): Promise<boolean> {
    return (await this.#do(() => this.#redis.sismember(this.#revokedKey, deviceId))) === 1;
  }

  async revokedDevices(): Promise<string[]> {
    return (await this.#do(() => this.#redis.smembers(this.#revokedKey))).sort();
  }

  /** SUBSCRIBE on a connection of its own (ioredis subscribes again after a reconnect). */
  async watchRevocations(listener: (change: RevocationChange) => void): Promise<RevocationWatch> {
    const channel = this.#revocationChannel;
    // its one command runs once per start, on a fresh connection: a deadline looser than the store calls' second
    const sub = this.#redis.duplicate({
      enableAutoPipelining: false,
      lazyConnect: true,
      commandTimeout: SUBSCRIBE_TIMEOUT_MS,
    });
    // outages of this connection surface on the main client's calls; without a listener ioredis prints them
    sub.on('error', () => {});
    sub.on('message', (from: string, message: string) => {
      if (from === channel) listener({ deviceId: message.slice(1), revoked: message.startsWith('1') });
    });
    this.#subscribers.add(sub);
    const close = async () => {
      this.#subscribers.delete(sub);
      // the socket closes asynchronously: a message already on its way must not reach a closed watch
      sub.removeAllListeners('message');
      sub.disconnect();
    };
    try {
      await this.#do(() => sub.subscribe(channel));
    } catch (err) {
      await close();
      throw err;
    }
    return { close };
  }

  async #changeRevoked(change: RevocationChange): Promise<boolean> {
    const { deviceId, revoked } = change;
    const tx = this.#redis.multi();
    if (revoked) tx.sadd(this.#revokedKey, deviceId);
    else tx.srem(this.#revokedKey, deviceId);
    tx.publish(this.#revocationChannel, `${revoked ? 1 : 0}${deviceId}`);
    const replies = await this.#do(() => tx.exec());
    const first = replies?.[0];
    if (first === undefined || first[0] !== null) throw unavailable(first?.[0] ?? 'MULTI was discarded');
    return first[1] === 1;
  }

  /**
   * PING with a deadline. Throws {@link UnavailableError} at once when the client is not connected (reconnecting,
   * closed), else when no PONG arrives within `pingTimeoutMs`.
   */
  async ping(): Promise<void> {
    const status = this.#redis.status;
    if (status === 'reconnecting' || status === 'close' || status === 'end') {
      throw new UnavailableError('store', `redis is not connected (${status})`);
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.#redis.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no PONG within ${this.#pingTimeoutMs} ms`)),
            this.#pingTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      throw new UnavailableError('store', 'redis did not answer PING', { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the watchers' connections; the borrowed client stays open. */
  async close(): Promise<void> {
    for (const sub of this.#subscribers) {
      sub.removeAllListeners('message');
      sub.disconnect();
    }
    this.#subscribers.clear();
  }

  /**
   * Runs one Redis call; any failure (connection, timeout, server error) becomes {@link UnavailableError}.
   * Writes are coalesced by ioredis' auto-pipelining (see {@link RedisStore.clientOptions}), not here.
   */
  #do<T>(op: () => Promise<T>): Promise<T> {
    let pending: Promise<T>;
    try {
      pending = op();
    } catch (err) {
      return Promise.reject(unavailable(err));
    }
    return pending.catch((err: unknown) => {
      throw unavailable(err);
    });
  }
}

// ---- Lua replies → typed results: the one place where return codes gain meaning. ----

function createResult(reply: unknown, decode: (body: string) => Flow): CreateResult {
  if (Array.isArray(reply)) {
    const [code, version, body] = reply as unknown[];
    if (code === 'created' && typeof version === 'number') return { status: 'created', version };
    if (code === 'exists' && typeof version === 'number' && typeof body === 'string') {
      return { status: 'exists', flow: decode(body), version };
    }
    if (code === 'limit') return { status: 'limit' };
    if (code === 'code_taken') return { status: 'code_taken' };
  }
  throw unexpected('create-4.lua', reply);
}

function updateResult(reply: unknown): UpdateResult {
  if (Array.isArray(reply)) {
    const [code, version] = reply as unknown[];
    switch (code) {
      case 'ok':
        if (typeof version === 'number') return { status: 'ok', version };
        break;
      case 'conflict':
      case 'missing':
      case 'regress':
      case 'lease_lost':
        return { status: code };
    }
  }
  throw unexpected('update-2.lua', reply);
}

function unavailable(err: unknown): UnavailableError {
  return err instanceof UnavailableError
    ? err
    : new UnavailableError('store', 'redis call failed', { cause: err });
}

function unexpected(script: string, reply: unknown): Error {
  const shape = Array.isArray(reply) ? `array of ${reply.length}` : typeof reply;
  return new Error(`${script} returned an unexpected reply (${shape})`);
}

/** Schedule member and user-code value: `deviceId/rid` (neither may contain `/`). */
function sid(deviceId: string, rid: string): string {
  return `${deviceId}/${rid}`;
}

function splitSid(member: string): { deviceId: string; rid: string } {
  const i = member.indexOf('/');
  return { deviceId: member.slice(0, i), rid: member.slice(i + 1) };
}

/** PX takes a positive integer; a TTL at or below zero keeps the value for 1 ms (it is dead at once anyway). */
function pxOf(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs));
}

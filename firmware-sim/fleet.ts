/**
 * Fleet mode: many simulated devices on plain mqtt.js clients (lighter than {@link SimDevice}), for benchmarks and
 * load tests. `connectFleet` opens the connections with bounded concurrency; `runRoundTrips` drives a closed loop per
 * device (one request in flight: publish `req/authorize` with a fresh rid, wait for the first reply with that rid,
 * record the latency, repeat) and reports throughput, latency percentiles and the replies by status.
 */
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { DeviceAction, DeviceReply } from '../src/core/protocol.ts';
import { systemTimers } from '../src/core/clock.ts';
import { type Topics, topics } from '../src/transport/topics.ts';
import { SimError, connacked, connectError, openDeviceClient } from './connection.ts';
import { DEFAULT_TOPIC_PREFIX } from './device.ts';
import { parseReply } from './replies.ts';

export interface RoundTripOptions {
  /** requests each device sends (closed loop); with `durationMs` too, whichever ends first */
  requestsPerDevice?: number;
  /** one request in flight per device: a closed loop (the only mode) */
  inFlightPerDevice?: 1;
  /** how long to run; default 10 000 ms unless `requestsPerDevice` is given */
  durationMs?: number;
  /** round trips started in the first `warmupMs` are not counted (default 0) */
  warmupMs?: number;
  /** the request each round trip sends (default and only: `authorize`) */
  action?: 'authorize';
  scope?: string;
  /** a round trip without a reply after this long counts as failed (default 10 000 ms) */
  requestTimeoutMs?: number;
  /**
   * After a `pending` reply, publish `req/cancel` for that rid (not timed), so the gateway's cap on live flows per
   * device is never reached. Default true.
   */
  cancel?: boolean;
  /** stops the loops early (Ctrl-C) */
  signal?: AbortSignal;
}

export interface FleetOptions extends RoundTripOptions {
  url: string;
  fleetKey: string;
  /** default `devicegate/v1` */
  topicPrefix?: string;
  /** how many devices to connect */
  devices: number;
  /** device ids are `{idPrefix}{n}`; default `sim-{6 random hex}-`, so two fleets on one broker do not collide */
  idPrefix?: string;
  /** connects in flight at once (default 50) */
  connectConcurrency?: number;
  /** per-connection CONNACK deadline (default 10 000 ms) */
  connectTimeoutMs?: number;
}

export interface FleetDevice {
  readonly id: string;
  readonly client: MqttClient;
}

export interface Fleet {
  /** the connected devices, in id order */
  readonly clients: readonly FleetDevice[];
  readonly topics: Topics;
  /** connects per second over the whole connect phase (CONNACK and SUBACK included) */
  readonly connectRate: number;
  /** ms from opening each connection to its CONNACK, in connect order */
  readonly connectLatencies: readonly number[];
  /** ms the connect phase took */
  readonly connectMs: number;
  /** Ends every connection (forcefully: nothing is in flight once the round trips are over). */
  close(): Promise<void>;
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface RoundTripResult {
  /** round trips that got a reply (any status), counted after warm-up */
  completed: number;
  /** round trips that did not end well: a reply with `status: "error"`, or no reply at all (`failed`) */
  errors: number;
  /** round trips with no reply: timeout, publish refused, connection lost */
  failed: number;
  /** completed round trips per second over the measured window */
  perSecond: number;
  /** latency of the completed round trips, ms (NaN when there were none) */
  latencyMs: LatencySummary;
  /** completed round trips by reply status */
  replies: Map<DeviceReply['status'], number>;
  /** error replies by OAuth error code */
  errorCodes: Map<string, number>;
  /** ms the measured window lasted */
  measuredMs: number;
}

/**
 * The `p`-th percentile (0–100) of `values` by the nearest-rank method: the smallest value such that at least `p`%
 * of the values are at or below it. `NaN` for an empty list. Does not modify `values`.
 */
export function percentile(values: readonly number[], p: number): number {
  return percentileOfSorted(
    [...values].sort((a, b) => a - b),
    p,
  );
}

function percentileOfSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** p50, p90, p99 and max of `values`. */
export function summarize(values: readonly number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: percentileOfSorted(sorted, 50),
    p90: percentileOfSorted(sorted, 90),
    p99: percentileOfSorted(sorted, 99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
  };
}

interface Member extends FleetDevice {
  /** rid → what to do with its first reply */
  readonly waiting: Map<string, (reply: DeviceReply | Error) => void>;
}

const members = new WeakMap<Fleet, Member[]>();

/**
 * Connects `o.devices` devices (ids `{idPrefix}0..n-1`, each with its own HMAC credential, clean sessions, no
 * reconnect, TCP_NODELAY) at most `connectConcurrency` at a time, each subscribed to its own `res` topic at QoS 1.
 * If any connection fails, every one opened so far is closed and the first failure is thrown as a {@link SimError}.
 */
export async function connectFleet(o: FleetOptions): Promise<Fleet> {
  if (!Number.isInteger(o.devices) || o.devices < 1)
    throw new RangeError('devices must be a positive integer');
  const t = topics(o.topicPrefix ?? DEFAULT_TOPIC_PREFIX);
  const idPrefix = o.idPrefix ?? `sim-${randomBytes(3).toString('hex')}-`;
  const concurrency = Math.max(1, Math.min(o.connectConcurrency ?? 50, o.devices));
  const timeoutMs = o.connectTimeoutMs ?? 10_000;
  const list: Member[] = [];
  const latencies: number[] = [];
  let failure: SimError | undefined;
  let next = 0;
  const started = performance.now();

  const connectOne = async (id: string): Promise<Member> => {
    const t0 = performance.now();
    const client = openDeviceClient({
      url: o.url,
      deviceId: id,
      fleetKey: o.fleetKey,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: timeoutMs,
    });
    const member: Member = { id, client, waiting: new Map() };
    list.push(member);
    const resTopic = t.response(id);
    client.on('message', (topic, payload) => {
      if (topic !== resTopic) return;
      const reply = parseReply(payload);
      if (reply?.rid === undefined) return;
      const done = member.waiting.get(reply.rid);
      if (done === undefined) return;
      member.waiting.delete(reply.rid);
      done(reply);
    });
    client.on('close', () => {
      for (const done of member.waiting.values()) done(new Error('connection lost'));
      member.waiting.clear();
    });
    // after CONNACK a socket error is followed by 'close', which fails the round trip in flight
    client.on('error', () => {});
    await connacked(client, o.url, timeoutMs + 500);
    latencies.push(performance.now() - t0);
    try {
      await client.subscribeAsync(resTopic, { qos: 1 });
    } catch (err) {
      throw new SimError('subscribe_refused', `${id}: the broker refused the subscription to ${resTopic}`, {
        cause: err,
      });
    }
    return member;
  };

  const worker = async () => {
    while (failure === undefined && next < o.devices) {
      const id = `${idPrefix}${next++}`;
      try {
        await connectOne(id);
      } catch (err) {
        failure ??= err instanceof SimError ? err : connectError(err, o.url);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const connectMs = performance.now() - started;

  const fleet: Fleet = {
    clients: list,
    topics: t,
    connectRate: list.length / (connectMs / 1000),
    connectLatencies: latencies,
    connectMs,
    async close() {
      await Promise.allSettled(list.map((m) => m.client.endAsync(true)));
    },
  };
  if (failure !== undefined) {
    await fleet.close();
    throw failure;
  }
  members.set(fleet, list);
  return fleet;
}

/** Publishes `{prefix}/{id}/req/{action}` (QoS 1) for one fleet device; resolves once the broker acknowledged it. */
export async function sendRequest(
  fleet: Fleet,
  device: FleetDevice,
  action: DeviceAction,
  body: object,
): Promise<void> {
  await device.client.publishAsync(fleet.topics.request(device.id, action), JSON.stringify(body), { qos: 1 });
}

/**
 * Calls `cb` with every well-formed reply on the device's `res` topic, synchronously on arrival (so a caller can
 * timestamp it), in addition to the round-trip bookkeeping of {@link runRoundTrips}.
 */
export function onFleetReply(fleet: Fleet, device: FleetDevice, cb: (reply: DeviceReply) => void): void {
  const resTopic = fleet.topics.response(device.id);
  device.client.on('message', (topic, payload) => {
    if (topic !== resTopic) return;
    const reply = parseReply(payload);
    if (reply !== undefined) cb(reply);
  });
}

/**
 * Runs the closed loop on every device of `fleet` until `requestsPerDevice` round trips each or `durationMs`,
 * whichever comes first, and summarizes the round trips started after `warmupMs`. Never throws for a failed round
 * trip: it is counted in `failed` (and a device whose connection dropped stops).
 */
export async function runRoundTrips(fleet: Fleet, o: RoundTripOptions = {}): Promise<RoundTripResult> {
  const list = members.get(fleet);
  if (list === undefined) throw new TypeError('not a fleet made by connectFleet');
  const durationMs = o.durationMs ?? (o.requestsPerDevice === undefined ? 10_000 : undefined);
  const timeoutMs = o.requestTimeoutMs ?? 10_000;
  const cancel = o.cancel ?? true;
  const runTag = randomBytes(4).toString('hex');
  const start = performance.now();
  const measureFrom = start + (o.warmupMs ?? 0);
  const deadline = durationMs === undefined ? Number.POSITIVE_INFINITY : start + durationMs;
  const latencies: number[] = [];
  const replies = new Map<DeviceReply['status'], number>();
  const errorCodes = new Map<string, number>();
  let failed = 0;
  let errors = 0;
  let lastDone = measureFrom;

  const once = (m: Member, rid: string, body: object): Promise<DeviceReply> =>
    new Promise((resolve, reject) => {
      const timer = systemTimers.setTimeout(() => {
        m.waiting.delete(rid);
        reject(new SimError('reply_timeout', `${m.id}: no reply for ${rid} within ${timeoutMs} ms`, { rid }));
      }, timeoutMs);
      m.waiting.set(rid, (r) => {
        systemTimers.clear(timer);
        if (r instanceof Error) reject(r);
        else resolve(r);
      });
      sendRequest(fleet, m, 'authorize', body).catch((err: unknown) => {
        const done = m.waiting.get(rid);
        m.waiting.delete(rid);
        done?.(err instanceof Error ? err : new Error(String(err)));
      });
    });

  const loop = async (m: Member, index: number) => {
    for (let seq = 0; o.requestsPerDevice === undefined || seq < o.requestsPerDevice; seq++) {
      if (o.signal?.aborted === true || performance.now() >= deadline || !m.client.connected) return;
      const rid = `${runTag}.${index}.${seq}`;
      const body = { rid, ...(o.scope !== undefined && { scope: o.scope }) };
      const t0 = performance.now();
      const counted = t0 >= measureFrom;
      try {
        const reply = await once(m, rid, body);
        const t1 = performance.now();
        if (counted) {
          latencies.push(t1 - t0);
          lastDone = Math.max(lastDone, t1);
          replies.set(reply.status, (replies.get(reply.status) ?? 0) + 1);
          if (reply.status === 'error') {
            errors++;
            errorCodes.set(reply.error, (errorCodes.get(reply.error) ?? 0) + 1);
          }
        }
        if (cancel && reply.status === 'pending') {
          sendRequest(fleet, m, 'cancel', { rid }).catch(() => {});
        }
      } catch {
        if (counted) {
          failed++;
          errors++;
        }
      }
    }
  };
  await Promise.all(list.map((m, i) => loop(m, i)));

  const measuredMs = Math.max(0, lastDone - measureFrom);
  return {
    completed: latencies.length,
    errors,
    failed,
    perSecond: measuredMs > 0 ? latencies.length / (measuredMs / 1000) : 0,
    latencyMs: summarize(latencies),
    replies,
    errorCodes,
    measuredMs,
  };
}

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
import { type DeviceTls, SimError, connacked, connectError, openDeviceClient } from './connection.ts';
import { DEFAULT_TOPIC_PREFIX } from './device.ts';
import { parseReply } from './replies.ts';
import { type RoundTripResult, Tally } from './stats.ts';

export { type LatencySummary, type RoundTripResult, percentile, summarize } from './stats.ts';

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
  /** mqtts:// / wss://: the CA to trust */
  tls?: DeviceTls | undefined;
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
  const progress: ConnectProgress = { opened: [], latencies: [] };
  let failure: SimError | undefined;
  let next = 0;
  const started = performance.now();

  const worker = async () => {
    while (failure === undefined && next < o.devices) {
      const id = `${idPrefix}${next++}`;
      try {
        await connectMember(o, t, id, timeoutMs, progress);
      } catch (err) {
        failure ??= err instanceof SimError ? err : connectError(err, o.url);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const connectMs = performance.now() - started;

  const list = progress.opened;
  const fleet: Fleet = {
    clients: list,
    topics: t,
    connectRate: list.length / (connectMs / 1000),
    connectLatencies: progress.latencies,
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

/** What the connect phase has done so far: every client opened (closed again if one fails) and CONNACK latencies. */
interface ConnectProgress {
  readonly opened: Member[];
  readonly latencies: number[];
}

/**
 * Opens one device's connection (added to `progress.opened` at once, so a failure elsewhere still closes it), waits
 * for CONNACK and subscribes to its `res` topic. Each reply settles the round trip waiting on its rid; a closed
 * connection fails every round trip in flight.
 */
async function connectMember(
  o: FleetOptions,
  t: Topics,
  id: string,
  timeoutMs: number,
  progress: ConnectProgress,
): Promise<void> {
  const t0 = performance.now();
  const client = openDeviceClient({
    url: o.url,
    deviceId: id,
    fleetKey: o.fleetKey,
    ...(o.tls !== undefined && { tls: o.tls }),
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
  });
  const member: Member = { id, client, waiting: new Map() };
  progress.opened.push(member);
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
  progress.latencies.push(performance.now() - t0);
  try {
    await client.subscribeAsync(resTopic, { qos: 1 });
  } catch (err) {
    throw new SimError('subscribe_refused', `${id}: the broker refused the subscription to ${resTopic}`, {
      cause: err,
    });
  }
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
  const tally = new Tally(measureFrom);

  const loop = async (m: Member, index: number) => {
    for (let seq = 0; o.requestsPerDevice === undefined || seq < o.requestsPerDevice; seq++) {
      if (o.signal?.aborted === true || performance.now() >= deadline || !m.client.connected) return;
      const rid = `${runTag}.${index}.${seq}`;
      const body = { rid, ...(o.scope !== undefined && { scope: o.scope }) };
      const t0 = performance.now();
      const counted = t0 >= measureFrom;
      try {
        const reply = await roundTrip(fleet, m, rid, body, timeoutMs);
        if (counted) tally.reply(reply, t0, performance.now());
        if (cancel && reply.status === 'pending') {
          sendRequest(fleet, m, 'cancel', { rid }).catch(() => {});
        }
      } catch {
        if (counted) tally.failure();
      }
    }
  };
  await Promise.all(list.map((m, i) => loop(m, i)));
  return tally.result();
}

/**
 * Publishes `req/authorize` with `body` and resolves with the first reply for `rid`; rejects when the publish is
 * refused, the connection closes, or no reply comes within `timeoutMs`.
 */
function roundTrip(
  fleet: Fleet,
  m: Member,
  rid: string,
  body: object,
  timeoutMs: number,
): Promise<DeviceReply> {
  return new Promise((resolve, reject) => {
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
}

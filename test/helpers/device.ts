/**
 * Test devices. `connectDevice` is the device client of firmware-sim/connection.ts (the fleet credential: username =
 * client id = device id, password = devicePassword(key, id); every part overridable to test refusals) that subscribes
 * to its own `res` topic and records every message it gets, raw, so tests can also send what a real device never
 * would; `request`/`ask`/`waitForReply` drive the contract. Raw sockets for protocol abuse are in raw.ts. Call
 * `closeAllDevices()` in afterEach/afterAll (it closes the raw connections too).
 */
import type { IClientOptions, IClientPublishOptions, MqttClient } from 'mqtt';
import { type DeviceTls, SimError, connacked, openDeviceClient } from '../../firmware-sim/connection.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';
import { closeAllRaw } from './raw.ts';

export const DEFAULT_PREFIX = 'devicegate/v1';

export interface DeviceOptions {
  /** `mqtt://host:port` */
  url: string;
  deviceId: string;
  /** fleet key; the password is `devicePassword(key, deviceId)` unless `password` is given */
  key?: string;
  /** overrides the derived password; `null` sends none */
  password?: string | null;
  /** overrides the username (default: the device id); `null` sends none */
  username?: string | null;
  /** overrides the client id (default: the device id) */
  clientId?: string;
  /** topic prefix (default `devicegate/v1`) */
  prefix?: string;
  /** subscribe to `{prefix}/{deviceId}/res` after connecting (default true) */
  subscribe?: boolean;
  clean?: boolean;
  protocolVersion?: 3 | 4 | 5;
  will?: IClientOptions['will'];
  keepalive?: number;
  /** CONNACK deadline (default 5000 ms) */
  connectTimeoutMs?: number;
  /** `mqtts://` / `wss://`: the CA to trust, the client certificate and key */
  tls?: DeviceTls;
}

/** One message the device received. */
export interface Received {
  topic: string;
  payload: Buffer;
  /** the payload parsed as a JSON object, when it is one */
  json: Record<string, unknown> | undefined;
  qos: number;
  retain: boolean;
  dup: boolean;
}

export type ReplyMatch = { rid?: string; status?: string } | ((r: Received) => boolean);

export interface TestDevice {
  readonly id: string;
  readonly client: MqttClient;
  /** every message received so far, in order */
  readonly received: Received[];
  /** true once the broker closed the connection (or `end()` was called) */
  readonly closed: boolean;
  /** `{prefix}/{id}/res` */
  readonly resTopic: string;
  /** `{prefix}/{id}/req/{action}` */
  reqTopic(action: string): string;
  /** Publishes to any topic; resolves on PUBACK (QoS 1, default) or once written (QoS 0). */
  publish(topic: string, payload: string | Buffer, opts?: IClientPublishOptions): Promise<void>;
  /** Publishes `body` (an object is JSON-encoded) on the device's own `req/{action}`. */
  request(action: string, body: unknown, opts?: IClientPublishOptions): Promise<void>;
  /** The first message from index `from` on (default 0) that matches; waits up to `timeoutMs` (default 5000). */
  waitForReply(match?: ReplyMatch, opts?: { timeoutMs?: number; from?: number }): Promise<Received>;
  /** `request` then the first later reply with the same `rid` (and `status`, when given). */
  ask(
    action: string,
    body: { rid: string } & Record<string, unknown>,
    opts?: { status?: string; timeoutMs?: number },
  ): Promise<Received>;
  /** Subscribes; resolves with the granted QoS list (128 = refused). */
  subscribe(topic: string, qos?: 0 | 1 | 2): Promise<number[]>;
  /** Resolves once the connection is closed (by the broker); rejects after `timeoutMs` (default 5000). */
  waitForClose(timeoutMs?: number): Promise<void>;
  /** Disconnects (forcefully unless `graceful`). */
  end(graceful?: boolean): Promise<void>;
}

const open = new Set<TestDevice>();

/** Ends every device and raw connection the helpers opened. */
export async function closeAllDevices(): Promise<void> {
  await Promise.allSettled([...open].map((d) => d.end()));
  open.clear();
  closeAllRaw();
}

/** A connect failure: `code` is the CONNACK return code (or reason code), when the broker sent one. */
export type ConnectError = Error & { code?: number };

/**
 * Connects a device. Resolves once CONNACK (rc 0) arrived and, unless `subscribe: false`, its own `res` subscription
 * was granted. Rejects with a {@link ConnectError}: the broker's refusal (`code` = CONNACK return code), or the socket
 * closing first. Never reconnects.
 */
export async function connectDevice(o: DeviceOptions): Promise<TestDevice> {
  const connectTimeout = o.connectTimeoutMs ?? 5000;
  const client = openDeviceClient({
    url: o.url,
    deviceId: o.deviceId,
    ...(o.key !== undefined && { fleetKey: o.key }),
    ...(o.password !== undefined && { password: o.password }),
    ...(o.username !== undefined && { username: o.username }),
    ...(o.clientId !== undefined && { clientId: o.clientId }),
    ...(o.protocolVersion !== undefined && { protocolVersion: o.protocolVersion }),
    ...(o.will !== undefined && { will: o.will }),
    ...(o.tls !== undefined && { tls: o.tls }),
    clean: o.clean ?? true,
    keepalive: o.keepalive ?? 30,
    reconnectPeriod: 0,
    connectTimeout,
  });
  const rec = record(client);
  try {
    await connacked(client, o.url, connectTimeout + 500);
  } catch (err) {
    // the broker's refusal as mqtt.js reports it (its message, `code` = return code); otherwise the SimError's story
    if (err instanceof SimError && !(err.cause instanceof Error)) throw new Error(err.message);
    throw err instanceof SimError ? err.cause : err;
  }
  const device = testDevice(o, client, rec);
  open.add(device);
  if (o.subscribe ?? true) {
    const granted = await device.subscribe(device.resTopic, 1);
    if (granted[0] === 128)
      throw new Error(`${o.deviceId}: subscription to its own ${device.resTopic} was refused`);
  }
  return device;
}

/** What a test device has seen: every message, and whether the connection closed. */
interface Recording {
  readonly received: Received[];
  /** called after every message */
  readonly waiters: Set<() => void>;
  /** called once the connection closed */
  readonly onClose: Set<() => void>;
  closed: boolean;
}

function record(client: MqttClient): Recording {
  const rec: Recording = { received: [], waiters: new Set(), onClose: new Set(), closed: false };
  client.on('message', (topic, payload, packet) => {
    let json: Record<string, unknown> | undefined;
    try {
      const v: unknown = JSON.parse(payload.toString('utf8'));
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) json = v as Record<string, unknown>;
    } catch {
      // not JSON: json stays undefined
    }
    rec.received.push({ topic, payload, json, qos: packet.qos, retain: packet.retain, dup: packet.dup });
    for (const w of rec.waiters) w();
  });
  client.on('close', () => {
    rec.closed = true;
    for (const w of rec.onClose) w();
  });
  // errors after connect (e.g. the broker closing the socket) are observed through `closed`
  client.on('error', () => {});
  return rec;
}

function matches(r: Received, m: ReplyMatch | undefined): boolean {
  if (m === undefined) return true;
  if (typeof m === 'function') return m(r);
  if (m.rid !== undefined && r.json?.['rid'] !== m.rid) return false;
  if (m.status !== undefined && r.json?.['status'] !== m.status) return false;
  return true;
}

function waitForMessage(
  id: string,
  rec: Recording,
  match: ReplyMatch | undefined,
  opts: { timeoutMs?: number; from?: number },
): Promise<Received> {
  const from = opts.from ?? 0;
  const timeoutMs = opts.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const look = () => {
      for (let i = from; i < rec.received.length; i++) {
        const r = rec.received[i]!;
        if (matches(r, match)) {
          clearTimeout(timer);
          rec.waiters.delete(look);
          resolve(r);
          return;
        }
      }
    };
    const timer = setTimeout(() => {
      rec.waiters.delete(look);
      reject(new Error(`${id}: no matching reply within ${timeoutMs} ms (got ${rec.received.length})`));
    }, timeoutMs);
    rec.waiters.add(look);
    look();
  });
}

function waitForClose(id: string, rec: Recording, timeoutMs: number): Promise<void> {
  if (rec.closed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      rec.onClose.delete(done);
      resolve();
    };
    const timer = setTimeout(() => {
      rec.onClose.delete(done);
      reject(new Error(`${id}: connection still open after ${timeoutMs} ms`));
    }, timeoutMs);
    rec.onClose.add(done);
  });
}

function testDevice(o: DeviceOptions, client: MqttClient, rec: Recording): TestDevice {
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  const device: TestDevice = {
    id: o.deviceId,
    client,
    received: rec.received,
    get closed() {
      return rec.closed;
    },
    resTopic: `${prefix}/${o.deviceId}/res`,
    reqTopic: (action) => `${prefix}/${o.deviceId}/req/${action}`,
    async publish(topic, payload, opts) {
      await client.publishAsync(topic, payload, { qos: 1, ...opts });
    },
    async request(action, body, opts) {
      const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      await device.publish(device.reqTopic(action), payload, opts);
    },
    waitForReply: (match, opts = {}) => waitForMessage(o.deviceId, rec, match, opts),
    async ask(action, body, opts = {}) {
      const from = rec.received.length;
      await device.request(action, body);
      return device.waitForReply(
        { rid: body.rid, ...(opts.status !== undefined && { status: opts.status }) },
        { from, ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }) },
      );
    },
    async subscribe(topic, qos = 1) {
      try {
        const granted = await client.subscribeAsync(topic, { qos });
        return granted.map((g) => g.qos);
      } catch (err) {
        // mqtt.js rejects a SUBACK that refuses a filter; the packet it carries has the granted list
        const granted = (err as { packet?: { granted?: unknown } }).packet?.granted;
        if (Array.isArray(granted)) return granted as number[];
        throw err;
      }
    },
    waitForClose: (timeoutMs = 5000) => waitForClose(o.deviceId, rec, timeoutMs),
    async end(graceful = false) {
      open.delete(device);
      await client.endAsync(!graceful);
    },
  };
  return device;
}

/** Connects and expects a refusal; resolves with the error (its `code` is the CONNACK return code). */
export async function connectRefused(o: DeviceOptions): Promise<ConnectError> {
  try {
    const d = await connectDevice({ subscribe: false, ...o });
    await d.end();
  } catch (err) {
    return err as ConnectError;
  }
  throw new Error(`${o.deviceId}: the connection was accepted`);
}

/** A fixed `pending` reply for `rid`, what recording handlers answer when the broker, not the gateway, is under test. */
export function fixedPendingReply(rid: string): DeviceReply {
  return {
    v: 1,
    rid,
    status: 'pending',
    user_code: 'BCDF-GHJK',
    verification_uri: 'http://127.0.0.1/device',
    expires_in: 600,
  };
}

/** The `rid` of a request payload of any size, or `none` (what recording handlers key their calls by). */
export function ridOf(payload: Buffer): string {
  try {
    const v: unknown = JSON.parse(payload.toString('utf8'));
    if (typeof v === 'object' && v !== null && typeof (v as { rid?: unknown }).rid === 'string') {
      return (v as { rid: string }).rid;
    }
  } catch {
    // not JSON
  }
  return 'none';
}

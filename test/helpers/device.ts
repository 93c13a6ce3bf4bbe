/**
 * Test devices. `connectDevice` is the device client of firmware-sim/connection.ts (the fleet credential: username =
 * client id = device id, password = devicePassword(key, id); every part overridable to test refusals) that subscribes
 * to its own `res` topic and records every message it gets, raw, so tests can also send what a real device never
 * would; `request`/`ask`/`waitForReply` drive the contract. `rawConnect` is a bare TCP socket speaking hand-made or
 * mqtt-packet-generated packets, for protocol abuse. Call `closeAllDevices()` in afterEach/afterAll.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { IClientOptions, IClientPublishOptions, MqttClient } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { SimError, connacked, openDeviceClient } from '../../firmware-sim/connection.ts';
import { devicePassword } from '../../src/core/crypto.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';

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
  for (const r of raws) r.destroy();
  raws.clear();
}

/** A connect failure: `code` is the CONNACK return code (or reason code), when the broker sent one. */
export type ConnectError = Error & { code?: number };

/**
 * Connects a device. Resolves once CONNACK (rc 0) arrived and, unless `subscribe: false`, its own `res` subscription
 * was granted. Rejects with a {@link ConnectError}: the broker's refusal (`code` = CONNACK return code), or the socket
 * closing first. Never reconnects.
 */
export async function connectDevice(o: DeviceOptions): Promise<TestDevice> {
  const prefix = o.prefix ?? DEFAULT_PREFIX;
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
    clean: o.clean ?? true,
    keepalive: o.keepalive ?? 30,
    reconnectPeriod: 0,
    connectTimeout,
  });
  const received: Received[] = [];
  const waiters = new Set<() => void>();
  let closed = false;
  const onClose = new Set<() => void>();
  client.on('message', (topic, payload, packet) => {
    let json: Record<string, unknown> | undefined;
    try {
      const v: unknown = JSON.parse(payload.toString('utf8'));
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) json = v as Record<string, unknown>;
    } catch {
      // not JSON: json stays undefined
    }
    received.push({ topic, payload, json, qos: packet.qos, retain: packet.retain, dup: packet.dup });
    for (const w of waiters) w();
  });
  client.on('close', () => {
    closed = true;
    for (const w of onClose) w();
  });
  // errors after connect (e.g. the broker closing the socket) are observed through `closed`
  client.on('error', () => {});

  try {
    await connacked(client, o.url, connectTimeout + 500);
  } catch (err) {
    // the broker's refusal as mqtt.js reports it (its message, `code` = return code); otherwise the SimError's story
    if (err instanceof SimError && !(err.cause instanceof Error)) throw new Error(err.message);
    throw err instanceof SimError ? err.cause : err;
  }

  const resTopic = `${prefix}/${o.deviceId}/res`;
  const matches = (r: Received, m: ReplyMatch | undefined): boolean => {
    if (m === undefined) return true;
    if (typeof m === 'function') return m(r);
    if (m.rid !== undefined && r.json?.['rid'] !== m.rid) return false;
    if (m.status !== undefined && r.json?.['status'] !== m.status) return false;
    return true;
  };

  const device: TestDevice = {
    id: o.deviceId,
    client,
    received,
    get closed() {
      return closed;
    },
    resTopic,
    reqTopic: (action) => `${prefix}/${o.deviceId}/req/${action}`,
    async publish(topic, payload, opts) {
      await client.publishAsync(topic, payload, { qos: 1, ...opts });
    },
    async request(action, body, opts) {
      const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      await device.publish(device.reqTopic(action), payload, opts);
    },
    waitForReply(match, opts = {}) {
      const from = opts.from ?? 0;
      const timeoutMs = opts.timeoutMs ?? 5000;
      return new Promise((resolve, reject) => {
        const look = () => {
          for (let i = from; i < received.length; i++) {
            const r = received[i]!;
            if (matches(r, match)) {
              clearTimeout(timer);
              waiters.delete(look);
              resolve(r);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(look);
          reject(
            new Error(`${o.deviceId}: no matching reply within ${timeoutMs} ms (got ${received.length})`),
          );
        }, timeoutMs);
        waiters.add(look);
        look();
      });
    },
    async ask(action, body, opts = {}) {
      const from = received.length;
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
    waitForClose(timeoutMs = 5000) {
      if (closed) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          onClose.delete(done);
          resolve();
        };
        const timer = setTimeout(() => {
          onClose.delete(done);
          reject(new Error(`${o.deviceId}: connection still open after ${timeoutMs} ms`));
        }, timeoutMs);
        onClose.add(done);
      });
    },
    async end(graceful = false) {
      open.delete(device);
      await client.endAsync(!graceful);
    },
  };
  open.add(device);
  if (o.subscribe ?? true) {
    const granted = await device.subscribe(resTopic, 1);
    if (granted[0] === 128) throw new Error(`${o.deviceId}: subscription to its own ${resTopic} was refused`);
  }
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

// ---------------------------------------------------------------------------------------------------------------
// Raw sockets

export interface RawConnection {
  readonly socket: Socket;
  /** packets the broker sent, parsed */
  readonly packets: Packet[];
  /** true once the broker closed the socket (or it was destroyed) */
  readonly closed: boolean;
  /** Sends an mqtt-packet object (generated as MQTT 3.1.1 unless `protocolVersion` says otherwise) or raw bytes. */
  send(packet: Packet | Uint8Array, opts?: { protocolVersion?: 3 | 4 | 5 }): void;
  /** The first packet of that type the broker sent (already or within `timeoutMs`, default 5000). */
  waitForPacket(cmd: Packet['cmd'], timeoutMs?: number): Promise<Packet>;
  /** Resolves once the broker closes the socket; rejects after `timeoutMs` (default 5000). */
  waitForClose(timeoutMs?: number): Promise<void>;
  destroy(): void;
}

const raws = new Set<RawConnection>();

/** Opens a TCP connection to a broker and parses what it sends back. Nothing is sent yet. */
export function rawConnect(port: number, host = '127.0.0.1'): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host, noDelay: true });
    const packets: Packet[] = [];
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const listeners = new Set<() => void>();
    let closed = false;
    parser.on('packet', (p) => {
      packets.push(p);
      for (const l of listeners) l();
    });
    parser.on('error', () => {});
    socket.on('data', (buf) => parser.parse(buf));
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      for (const l of listeners) l();
    });
    const wait = <T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
      new Promise((res, rej) => {
        const look = () => {
          const v = check();
          if (v === undefined) return;
          clearTimeout(timer);
          listeners.delete(look);
          res(v);
        };
        const timer = setTimeout(() => {
          listeners.delete(look);
          rej(new Error(`raw connection: ${what} did not happen within ${timeoutMs} ms`));
        }, timeoutMs);
        listeners.add(look);
        look();
      });
    const conn: RawConnection = {
      socket,
      packets,
      get closed() {
        return closed;
      },
      send(packet, opts) {
        if (closed || socket.destroyed) return;
        const bytes =
          packet instanceof Uint8Array
            ? packet
            : mqttPacket.generate(packet, { protocolVersion: opts?.protocolVersion ?? 4 });
        socket.write(bytes);
      },
      waitForPacket(cmd, timeoutMs = 5000) {
        return wait(() => packets.find((p) => p.cmd === cmd), timeoutMs, `a ${cmd} packet`);
      },
      waitForClose(timeoutMs = 5000) {
        return wait(() => (closed ? true : undefined), timeoutMs, 'close').then(() => undefined);
      },
      destroy() {
        socket.destroy();
        raws.delete(conn);
      },
    };
    raws.add(conn);
    socket.once('connect', () => resolve(conn));
    socket.once('error', reject);
  });
}

/** A raw connection that has sent an authenticated CONNECT (HMAC of `key`, or `password`) and got CONNACK rc 0. */
export async function rawDevice(
  port: number,
  deviceId: string,
  auth: { key: string } | { password: string },
): Promise<RawConnection> {
  const conn = await rawConnect(port);
  conn.send({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: deviceId,
    clean: true,
    keepalive: 30,
    username: deviceId,
    password: Buffer.from('key' in auth ? devicePassword(auth.key, deviceId) : auth.password),
  });
  const connack = await conn.waitForPacket('connack');
  if (connack.cmd !== 'connack' || connack.returnCode !== 0) {
    conn.destroy();
    throw new Error(`${deviceId}: raw CONNECT refused`);
  }
  return conn;
}

/** MQTT Remaining Length encoding (1–4 bytes, MQTT 3.1.1 §2.2.3). */
export function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** A hand-made packet: first header byte, the Remaining Length of `body`, then `body`. */
export function frame(firstByte: number, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body]);
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

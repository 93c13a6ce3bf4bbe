/**
 * The fuzz campaigns' MQTT sides: fuzz devices that publish mutated payloads on their own request topics and check
 * every reply they get; raw TCP connections that send malformed packets; slowloris connections.
 */
import type { MqttClient } from 'mqtt';
import { connacked, openDeviceClient } from '../../firmware-sim/connection.ts';
import { type RawConnection, rawConnect, rawDevice } from '../../test/helpers/raw.ts';
import type { Rng } from '../lib/rng.ts';
import { packetCase } from './packets.ts';
import { fuzzPayload } from './payloads.ts';
import { FUZZ_KEY } from './target.ts';

export interface Tally {
  replies: number;
  /** a reply on another device's topic or carrying a rid another device sent */
  crossDevice: number;
  /** fuzz devices the gateway disconnected */
  disconnects: number;
  packets: number;
  cases: number;
}

/** rid → the fuzz devices that sent it (a mutation may turn one device's rid into another's) */
const senders = new Map<string, Set<number>>();
const WINDOW = 32;

/** A device named `fuzz-{index}` whose legitimate rids are `d{index}-{n}`. */
async function fuzzDevice(url: string, index: number, tally: Tally): Promise<MqttClient> {
  const id = `fuzz-${index}`;
  const client = openDeviceClient({
    url,
    deviceId: id,
    fleetKey: FUZZ_KEY,
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });
  await connacked(client, url, 10_500);
  client.on('message', (topic, payload) => {
    tally.replies += 1;
    const rid = ridOf(payload);
    const sentBy = rid === undefined ? undefined : senders.get(rid);
    const othersOnly = sentBy !== undefined && !sentBy.has(index);
    if (topic !== `devicegate/v1/${id}/res` || rid?.startsWith('ctl-') || othersOnly) tally.crossDevice += 1;
  });
  client.on('close', () => (tally.disconnects += 1));
  await client.subscribeAsync(`devicegate/v1/${id}/res`, { qos: 1 });
  return client;
}

export function ridOf(payload: Buffer): string | undefined {
  try {
    const v: unknown = JSON.parse(payload.toString('utf8'));
    const rid = typeof v === 'object' && v !== null ? (v as { rid?: unknown }).rid : undefined;
    return typeof rid === 'string' ? rid : undefined;
  } catch {
    return undefined;
  }
}

/** Publishes `count` mutated payloads from `devices` fuzz devices (QoS 1, a window of 32 each); reconnects a dropped one. */
export async function jsonCampaign(
  url: string,
  rng: Rng,
  count: number,
  devices: number,
  tally: Tally,
): Promise<void> {
  let sent = 0;
  await Promise.all(
    Array.from({ length: devices }, async (_, index) => {
      const r = rng.fork(`json-${index}`);
      let client = await fuzzDevice(url, index, tally);
      const inFlight = new Set<Promise<unknown>>();
      while (sent < count) {
        const n = sent++;
        const { action, payload } = fuzzPayload(r, `d${index}-`, n);
        const rid = ridOf(payload);
        if (rid !== undefined) senders.set(rid, (senders.get(rid) ?? new Set()).add(index));
        if (!client.connected) client = await fuzzDevice(url, index, tally);
        const p = client
          .publishAsync(`devicegate/v1/fuzz-${index}/req/${action}`, payload, { qos: 1 })
          .catch(() => undefined);
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        if (inFlight.size >= WINDOW) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      // give the last replies a moment before the connection goes
      await new Promise((resolve) => setTimeout(resolve, 500));
      client.removeAllListeners('close');
      await client.endAsync(true);
    }),
  );
}

/** Sends malformed packets until `count` were sent, one case per connection, `parallel` connections at a time. */
export async function packetCampaign(
  port: number,
  rng: Rng,
  count: number,
  parallel: number,
  tally: Tally,
): Promise<void> {
  await Promise.all(
    Array.from({ length: parallel }, async (_, w) => {
      const r = rng.fork(`packets-${w}`);
      while (tally.packets < count) {
        const c = packetCase(r, `raw-${w}`);
        tally.packets += c.packets.length;
        tally.cases += 1;
        await runCase(port, `raw-${w}`, c.connectFirst, c.packets);
      }
    }),
  );
}

async function runCase(
  port: number,
  deviceId: string,
  connectFirst: boolean,
  packets: readonly Buffer[],
): Promise<void> {
  let conn: RawConnection | undefined;
  try {
    conn = connectFirst ? await rawDevice(port, deviceId, { key: FUZZ_KEY }) : await rawConnect(port);
    for (const p of packets) conn.send(p);
    // the broker closes most of these at once; the rest get a moment to be read
    await conn.waitForClose(30).catch(() => undefined);
  } catch {
    // a refused CONNECT or a reset: what malformed input is expected to get
  } finally {
    conn?.destroy();
  }
}

/**
 * Slowloris: `n` connections that dribble a valid CONNECT one byte every `everyMs`. Resolves with how many the broker
 * had not closed after `holdMs`.
 */
export async function slowloris(port: number, n: number, everyMs: number, holdMs: number): Promise<number> {
  const conns = await Promise.all(Array.from({ length: n }, () => rawConnect(port)));
  const bytes = Buffer.from([0x10, 0x7f, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c]);
  let i = 0;
  const timer = setInterval(() => {
    for (const c of conns) c.send(bytes.subarray(i % bytes.length, (i % bytes.length) + 1));
    i += 1;
  }, everyMs);
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  clearInterval(timer);
  const open = conns.filter((c) => !c.closed).length;
  for (const c of conns) c.destroy();
  return open;
}

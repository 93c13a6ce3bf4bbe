/**
 * Raw MQTT connections for protocol abuse: a bare TCP socket that sends hand-made or mqtt-packet-generated packets and
 * parses what the broker answers, where the device client (device.ts) would refuse to send such things.
 */
import { connect as netConnect, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { devicePassword } from '../../src/core/crypto.ts';

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

/** Destroys every raw connection opened so far (closeAllDevices in device.ts calls it). */
export function closeAllRaw(): void {
  for (const r of raws) r.destroy();
  raws.clear();
}

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

/** A device's MQTT 3.1.1 CONNECT: client id = username = `deviceId`, the password HMAC of `key` or as given. */
export function deviceConnect(
  deviceId: string,
  auth: { key: string } | { password: string },
  opts: { clean?: boolean } = {},
): Packet {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: deviceId,
    clean: opts.clean ?? true,
    keepalive: 30,
    username: deviceId,
    password: Buffer.from('key' in auth ? devicePassword(auth.key, deviceId) : auth.password),
  };
}

/** A raw connection that has sent an authenticated CONNECT (HMAC of `key`, or `password`) and got CONNACK rc 0. */
export async function rawDevice(
  port: number,
  deviceId: string,
  auth: { key: string } | { password: string },
): Promise<RawConnection> {
  const conn = await rawConnect(port);
  conn.send(deviceConnect(deviceId, auth));
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

/**
 * Malformed MQTT for the embedded broker, one connection per case: bytes that are no MQTT at all, bad fixed headers
 * and Remaining Lengths, every packet type before CONNECT, broken CONNECTs, and — after a valid CONNECT — packets out
 * of order (server-only packets, a second CONNECT, acknowledgements of ids never sent), QoS 3, reused packet ids and
 * abusive topics. Slowloris connections are made by the runner (they need time, not bytes).
 */
import mqttPacket, { type Packet } from 'mqtt-packet';
import { deviceConnect, frame, remainingLength } from '../../test/helpers/raw.ts';
import type { Rng } from '../lib/rng.ts';

export interface PacketCase {
  name: string;
  /** send a valid, authenticated CONNECT first (and wait for CONNACK) */
  connectFirst: boolean;
  /** the malformed packets, in order */
  packets: Buffer[];
}

const gen = (p: Packet): Buffer => Buffer.from(mqttPacket.generate(p, { protocolVersion: 4 }));

function randomBytes(rng: Rng, min: number, max: number): Buffer {
  return Buffer.from(Array.from({ length: rng.int(min, max) }, () => rng.int(0, 255)));
}

/** Every fixed-header type with random flags and a random (possibly empty) body. */
function anyType(rng: Rng): Buffer {
  return frame((rng.int(0, 15) << 4) | rng.int(0, 15), randomBytes(rng, 0, 40));
}

/** Remaining Lengths that lie: five continuation bytes, more than announced, less than announced, over 64 KiB. */
function badLength(rng: Rng): Buffer {
  const first = Buffer.from([rng.pick([0x10, 0x30, 0x32, 0x82, 0xc0])]);
  switch (rng.int(0, 3)) {
    case 0:
      return Buffer.concat([first, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f])]);
    case 1:
      return Buffer.concat([first, remainingLength(rng.int(1, 200)), randomBytes(rng, 0, 10)]);
    case 2:
      return Buffer.concat([first, remainingLength(2), randomBytes(rng, 10, 300)]);
    default:
      return Buffer.concat([first, remainingLength(rng.int(65_537, 268_435_455)), randomBytes(rng, 0, 64)]);
  }
}

/** CONNECTs that must be refused: wrong protocol names and levels, reserved flag, will QoS 3, bad ids. */
function badConnect(rng: Rng, deviceId: string): Buffer {
  const valid = gen(deviceConnect(deviceId, { password: 'wrong-password' }));
  const copy = Buffer.from(valid);
  switch (rng.int(0, 4)) {
    case 0:
      copy[8] = rng.pick([0, 2, 5, 6, 7, 255]); // protocol level
      return copy;
    case 1:
      copy[9] = (copy[9]! | 0x01) ^ (rng.int(0, 7) << 3); // reserved flag bit, and a will QoS of up to 3
      return copy;
    case 2:
      copy.write('MQTX', 4, 'latin1');
      return copy;
    case 3:
      return gen({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clientId: 'x'.repeat(rng.int(65, 5000)),
        clean: true,
        keepalive: rng.pick([0, 65535]),
      });
    default:
      return copy.subarray(0, rng.int(2, copy.length - 1));
  }
}

/** What a connected device must not send: server packets, a second CONNECT, unknown acks, QoS 3, reused ids. */
function outOfOrder(rng: Rng, deviceId: string): Buffer[] {
  const own = `devicegate/v1/${deviceId}/req/status`;
  const messageId = rng.int(0, 65535);
  const payload = Buffer.from(JSON.stringify({ rid: `raw${messageId}` }));
  switch (rng.int(0, 9)) {
    case 0:
      return [gen({ cmd: 'connack', returnCode: rng.int(0, 5), sessionPresent: rng.chance(0.5) })];
    case 1:
      return [gen({ cmd: 'suback', messageId, granted: [rng.int(0, 2), 128] })];
    case 2: {
      const acks: Packet[] = [
        { cmd: 'puback', messageId },
        { cmd: 'pubrec', messageId },
        { cmd: 'pubcomp', messageId },
        { cmd: 'unsuback', messageId, granted: [] },
      ];
      return [gen(rng.pick(acks))];
    }
    case 3:
      return [gen({ cmd: 'pubrel', messageId })];
    case 4:
      return [
        gen({ cmd: 'pingresp' }),
        gen({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: deviceId,
          clean: true,
          keepalive: 30,
        }),
      ];
    case 5:
      // QoS 3 (both QoS bits) on the device's own topic
      return [
        frame(
          0x36,
          Buffer.concat([
            gen({
              cmd: 'publish',
              topic: own,
              payload,
              qos: 1,
              messageId,
              retain: false,
              dup: false,
            }).subarray(2),
          ]),
        ),
      ];
    case 6: {
      // the same packet id twice before any acknowledgement, QoS 1 and QoS 2
      const qos = rng.pick([1, 2] as const);
      const p = gen({
        cmd: 'publish',
        topic: own,
        payload,
        qos,
        messageId: Math.max(1, messageId),
        retain: false,
        dup: false,
      });
      return [p, p, gen({ cmd: 'pubrel', messageId: Math.max(1, messageId) })];
    }
    case 7:
      return [
        gen({
          cmd: 'publish',
          topic: rng.pick([
            '#',
            '',
            '+/+',
            `devicegate/v1/${deviceId}/req/\u0000`,
            `devicegate/v1/${deviceId}/req/${'x'.repeat(300)}`,
            'devicegate/v1/other/req/authorize',
          ]),
          payload,
          qos: 0,
          retain: rng.chance(0.5),
          dup: false,
        }),
      ];
    case 8: {
      const sub = gen({
        cmd: 'subscribe',
        messageId: Math.max(1, messageId),
        subscriptions: [
          {
            topic: rng.pick([
              '#',
              `devicegate/v1/${deviceId}/res`,
              '$share/g/devicegate/v1/+/req/+',
              '$SYS/#',
            ]),
            qos: 1,
          },
        ],
      });
      sub[sub.length - 1] = rng.int(0, 255); // requested QoS: 3 and reserved bits included
      return [sub];
    }
    default:
      return [
        gen({
          cmd: 'unsubscribe',
          messageId: Math.max(1, messageId),
          unsubscriptions: ['never/subscribed', '#'],
        }),
        anyType(rng),
      ];
  }
}

/** The `n`th packet case; connected cases use `deviceId` (a device with a valid credential). */
export function packetCase(rng: Rng, deviceId: string): PacketCase {
  switch (rng.int(0, 5)) {
    case 0:
      return { name: 'garbage', connectFirst: false, packets: [randomBytes(rng, 1, 200)] };
    case 1:
      return { name: 'any-type-first', connectFirst: false, packets: [anyType(rng), anyType(rng)] };
    case 2:
      return { name: 'bad-length', connectFirst: rng.chance(0.5), packets: [badLength(rng)] };
    case 3:
      return { name: 'bad-connect', connectFirst: false, packets: [badConnect(rng, deviceId)] };
    default:
      return { name: 'out-of-order', connectFirst: true, packets: outOfOrder(rng, deviceId) };
  }
}

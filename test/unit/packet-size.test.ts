import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { publishPacketSize } from '../../src/transport/packet-size.ts';

/** The PUBLISH as mqtt-packet (the encoder mqtt.js uses) writes it. */
function encoded(topic: string, payload: string, protocolVersion: 4 | 5, correlationData?: Buffer): number {
  return mqttPacket.generate(
    {
      cmd: 'publish',
      topic,
      payload,
      qos: 1,
      messageId: 7,
      retain: false,
      dup: false,
      ...(correlationData !== undefined && { properties: { correlationData } }),
    },
    { protocolVersion },
  ).length;
}

describe('publishPacketSize', () => {
  // payload lengths around each Remaining Length boundary (1, 2 and 3 bytes of it)
  it.each([0, 100, 127, 16_000, 16_384, 200_000])('matches the encoder for a %i-byte payload', (n) => {
    const topic = 'devicegate/v1/tv-ü/res';
    const payload = 'x'.repeat(n);
    expect(publishPacketSize({ topic, payload, mqtt5: false })).toBe(encoded(topic, payload, 4));
    expect(publishPacketSize({ topic, payload, mqtt5: true })).toBe(encoded(topic, payload, 5));
    const data = Buffer.alloc(40, 1);
    expect(publishPacketSize({ topic, payload, mqtt5: true, correlationData: data })).toBe(
      encoded(topic, payload, 5, data),
    );
  });
});

/**
 * The size on the wire of a reply's PUBLISH, to hold it against the largest packet the receiver accepts (MQTT 5
 * §3.1.2.11.4 / §3.2.2.3.6 Maximum Packet Size). A broker that gets a packet over its limit closes the connection
 * (Mosquitto `max_packet_size`), so an oversize reply must be refused before it is sent, not retried.
 */
import type { Oversize } from './types.ts';

/** A QoS 1 PUBLISH as the gateway sends it. */
export interface ReplyPacket {
  topic: string;
  payload: string | Buffer;
  /** MQTT 5 only: the one property a reply carries */
  correlationData?: Buffer;
  /** MQTT 5 has a Properties field (an empty one is one byte) */
  mqtt5: boolean;
}

/** The packet's size and `limit` when it is over it; `undefined` when it fits or there is no limit. */
export function overLimit(p: ReplyPacket, limit: number | undefined): Oversize | undefined {
  if (limit === undefined) return undefined;
  const size = publishPacketSize(p);
  return size > limit ? { size, limit } : undefined;
}

/** Bytes of a Variable Byte Integer (MQTT 5 §1.5.5) holding `n`. */
function varintBytes(n: number): number {
  if (n < 128) return 1;
  if (n < 16_384) return 2;
  return n < 2_097_152 ? 3 : 4;
}

/** Total bytes of the PUBLISH: fixed header, topic, packet id, properties, payload (MQTT 5 §3.3). */
export function publishPacketSize(p: ReplyPacket): number {
  const topic = 2 + Buffer.byteLength(p.topic);
  const packetId = 2;
  const payload = typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : p.payload.length;
  const props = p.correlationData === undefined ? 0 : 1 + 2 + p.correlationData.length;
  const properties = p.mqtt5 ? varintBytes(props) + props : 0;
  const remaining = topic + packetId + properties + payload;
  return 1 + varintBytes(remaining) + remaining;
}

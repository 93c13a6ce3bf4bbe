/**
 * Transports carry the device contract between a broker and the flow service. They only translate: a device's
 * request becomes one {@link DeviceRequestHandler} call; a reply becomes one QoS 1, never-retained publish on the
 * device's `res` topic. Identity checks happen before the handler (embedded: the broker's hooks; external: the
 * broker's ACLs). A transport fails closed: when in doubt it drops the message, never forwards it.
 */
import type { DeviceAction, DeviceReply } from '../core/protocol.ts';

/**
 * Where the direct answer to one request goes, as the request asked (MQTT 5 Response Topic and Correlation Data,
 * MQTT 5 §4.10). Taken as the device sent it: the transport's `publish` applies the topic rule
 * (`isOwnReplyTopic` in ./topics.ts) and falls back to the device's `res`.
 */
export interface ReplyRoute {
  readonly topic: string;
  /** echoed unchanged with the reply, when the request carried it */
  readonly correlationData?: Buffer;
}

export interface IncomingRequest {
  /** the authenticated device (embedded) or the topic's device id (external, enforced by the broker's ACL) */
  deviceId: string;
  /** `undefined` when the topic's last level is not a known action; `rawAction` has what was sent */
  action: DeviceAction | undefined;
  rawAction: string;
  payload: Buffer;
  /** remote address of the device's connection, when the transport knows it */
  remoteAddress?: string;
  /** the request's MQTT 5 Response Topic and Correlation Data (external broker on MQTT 5 only) */
  replyTo?: ReplyRoute;
}

/** Handles one request. Must not throw: every failure becomes an error reply to the same device. */
export type DeviceRequestHandler = (request: IncomingRequest) => Promise<void>;

export interface TransportStatus {
  connected: boolean;
  detail: string;
}

/** The requests a transport is handling and holding (`/readyz` check `requests`). */
export interface RequestLoad {
  /** no new request could wait for a processing slot: it would be dropped (external) or held back (embedded) */
  saturated: boolean;
  detail: string;
}

/** A reply too large to send: its PUBLISH size and the limit (bytes). */
export interface Oversize {
  size: number;
  limit: number;
}

export interface DeviceTransport {
  /** Starts carrying traffic; resolves once devices can connect (embedded) or the subscription is in place (external). */
  start(handler: DeviceRequestHandler): Promise<void>;
  /**
   * Publishes `reply` on `{prefix}/{deviceId}/res`, QoS 1, retain false — or, given a `route` that passes
   * `isOwnReplyTopic` (./topics.ts), on the route's topic with its Correlation Data (a transport that cannot carry
   * MQTT 5 properties ignores `route`). Resolves when the broker has taken it (embedded: routed; external: PUBACK).
   * Rejects with `UnavailableError` when the broker is unreachable.
   */
  publish(deviceId: string, reply: DeviceReply, route?: ReplyRoute): Promise<void>;
  /**
   * The reply's PUBLISH size and the packet limit it exceeds on `deviceId`'s `res`, or `undefined` when it fits; a
   * transport that knows no limit omits this (./packet-size.ts).
   */
  oversize?(deviceId: string, reply: DeviceReply): Oversize | undefined;
  status(): TransportStatus;
  /** How busy request handling is; before `start()`, idle. */
  load(): RequestLoad;
  /**
   * Closes a (revoked) device's live connection, where the transport owns the connections (the embedded broker). An
   * external broker's connections are the broker's to close (docs/brokers.md).
   */
  disconnect?(deviceId: string): void;
  /** Stops taking requests, waits for the ones in flight, then disconnects. */
  close(): Promise<void>;
}

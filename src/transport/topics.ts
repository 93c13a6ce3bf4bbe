/** Topic names of the device contract (docs/architecture.md). The only place that builds or parses them. */
import { type DeviceAction, ID_PATTERN, isDeviceAction } from '../core/protocol.ts';
import { SELF_CHECK_ACTION } from './self-check.ts';

export interface Topics {
  readonly prefix: string;
  /** `{prefix}/{deviceId}/res` */
  response(deviceId: string): string;
  /**
   * Whether an MQTT 5 Response Topic a request of `deviceId` carried may receive the reply: only the device's own
   * `res` or a topic below it (see {@link isOwnReplyTopic}).
   */
  isOwnReplyTopic(deviceId: string, topic: string): boolean;
  /** `{prefix}/{deviceId}/req/{action}` */
  request(deviceId: string, action: DeviceAction): string;
  /** `{prefix}/{id}/req/selfcheck`: where the delivery self-check's canary goes (./self-check.ts). */
  selfCheck(id: string): string;
  /** `{prefix}/+/req/+`: what the gateway consumes. */
  readonly requestFilter: string;
  /**
   * Splits a concrete request topic. `undefined` when it is not `{prefix}/{id}/req/{x}` with a valid id; `action` is
   * `undefined` when the last level is not a known action (the caller answers `invalid_request`).
   */
  parseRequest(
    topic: string,
  ): { deviceId: string; action: DeviceAction | undefined; rawAction: string } | undefined;
}

export function topics(prefix: string): Topics {
  const head = `${prefix}/`;
  return {
    prefix,
    response: (deviceId) => `${prefix}/${deviceId}/res`,
    isOwnReplyTopic: (deviceId, topic) => isOwnReplyTopic(`${prefix}/${deviceId}/res`, topic),
    request: (deviceId, action) => `${prefix}/${deviceId}/req/${action}`,
    selfCheck: (id) => `${prefix}/${id}/req/${SELF_CHECK_ACTION}`,
    requestFilter: `${prefix}/+/req/+`,
    parseRequest(topic) {
      if (!topic.startsWith(head)) return undefined;
      const rest = topic.slice(head.length).split('/');
      if (rest.length !== 3 || rest[1] !== 'req') return undefined;
      const [deviceId, , rawAction] = rest as [string, string, string];
      if (!ID_PATTERN.test(deviceId)) return undefined;
      return { deviceId, action: isDeviceAction(rawAction) ? rawAction : undefined, rawAction };
    },
  };
}

/** MQTT's limit on a topic name's length in bytes (MQTT 5 §1.5.4). */
const MAX_TOPIC_BYTES = 65_535;

/**
 * The rule for an MQTT 5 Response Topic (MQTT 5 §4.10), given the device's own `res` topic: the reply may go to
 * `res` itself or below it (`res/rpc-1`), never anywhere else. A device names the topic, so anything wider would
 * let it have the gateway publish where it may not (another device's `res`, or its own `req/…`, which the gateway
 * consumes itself); the shipped broker ACL (deploy/mosquitto/acl) grants exactly this subtree. A topic name never
 * holds a wildcard or NUL (MQTT 5 §4.7.3); an empty level is refused too, as no device needs one.
 */
export function isOwnReplyTopic(ownResponse: string, topic: string): boolean {
  if (topic !== ownResponse && !topic.startsWith(`${ownResponse}/`)) return false;
  if (Buffer.byteLength(topic) > MAX_TOPIC_BYTES) return false;
  // eslint-disable-next-line no-control-regex -- NUL is forbidden in MQTT topic names
  if (/[#+\u0000]/.test(topic)) return false;
  return !topic.slice(ownResponse.length).split('/').slice(1).includes('');
}

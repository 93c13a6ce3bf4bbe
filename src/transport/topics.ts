/** Topic names of the device contract (docs/architecture.md). The only place that builds or parses them. */
import { type DeviceAction, ID_PATTERN, isDeviceAction } from '../core/protocol.ts';
import { SELF_CHECK_ACTION } from './self-check.ts';

export interface Topics {
  readonly prefix: string;
  /** `{prefix}/{deviceId}/res` */
  response(deviceId: string): string;
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

/**
 * Starting a flow for `req/authorize`. One starter per mode, chosen once when the service is built
 * (`start-relay.ts`, `start-bridge.ts`); both create the flow in the store atomically with its schedule.
 */
import { type OAuthError, slowDown, temporarilyUnavailable } from '../core/errors.ts';
import type { DeviceInfo, Flow, FlowBase, PublicJwk } from '../core/flow.ts';
import type { CreateResult, Versioned } from '../store/types.ts';

/** Seconds a device is told to wait when a dependency is down or the gateway is out of codes. */
export const RETRY_AFTER_SECONDS = 5;

/** What a new flow starts from: the device's validated request. */
export interface NewFlow {
  deviceId: string;
  rid: string;
  /** the scope to ask for (the device's, or the default), already checked against the allowed scopes */
  scope: string;
  jwk?: PublicJwk;
  device?: DeviceInfo;
  network?: string;
}

export type StartResult =
  /** the flow was created; the device is to be told its pending view */
  | { status: 'created'; flow: Flow }
  /** a flow with this rid exists already: the request is a repeat, answered like `req/status` */
  | { status: 'exists'; known: Versioned };

export interface FlowStarter {
  /**
   * Creates the flow. Throws `OAuthError` (`slow_down` when the device has too many unfinished flows,
   * `temporarily_unavailable` when no user code is free, or the upstream's refusal) or `UnavailableError`.
   */
  start(request: NewFlow): Promise<StartResult>;
}

/** The public fields both modes start with. */
export function pendingBase(request: NewFlow, now: number): Omit<FlowBase, 'expiresAt' | 'interval'> {
  return {
    deviceId: request.deviceId,
    rid: request.rid,
    state: 'pending',
    scope: request.scope,
    createdAt: now,
    ...(request.jwk !== undefined && { jwk: request.jwk }),
    ...(request.device !== undefined && { device: request.device }),
    ...(request.network !== undefined && { network: request.network }),
  };
}

/** Maps the store's answer to a create; refusals become the error the device is sent. */
export function startResult(created: CreateResult, flow: Flow, maxLive: number): StartResult {
  switch (created.status) {
    case 'created':
      return { status: 'created', flow };
    case 'exists':
      return { status: 'exists', known: { flow: created.flow, version: created.version } };
    case 'code_taken':
      throw temporarilyUnavailable('no free user code; try again', RETRY_AFTER_SECONDS);
    case 'limit':
      throw limitError(maxLive);
  }
}

/** The refusal of a device that already has `maxLive` unfinished flows. */
export function limitError(maxLive: number): OAuthError {
  return slowDown(
    `this device already has ${maxLive} unfinished requests; finish or cancel one first`,
    RETRY_AFTER_SECONDS,
  );
}

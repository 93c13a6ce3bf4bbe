/**
 * Relay mode's starter: the upstream's RFC 8628 device authorization endpoint issues the codes (§3.1–3.2); the
 * gateway keeps the device code sealed and polls for the device (scheduled at the upstream's interval).
 *
 * The device's cap is checked before the upstream is asked (docs/security.md): the store's live count plus the starts
 * this instance has in flight for the device must leave room. Concurrent requests of one device therefore cost at
 * most `maxFlowsPerDevice` upstream calls per instance; the atomic cap in the store's `create` stays the authority
 * (several instances can each pass the early check once per free slot).
 */
import type { Clock } from '../core/clock.ts';
import { dueAt } from '../core/engine.ts';
import type { RelayFlow } from '../core/flow.ts';
import type { FlowStore } from '../store/types.ts';
import type { RelayUpstream } from '../upstream/types.ts';
import {
  type FlowStarter,
  type NewFlow,
  type StartResult,
  limitError,
  pendingBase,
  startResult,
} from './starter.ts';
import { storeCall } from './store-call.ts';

export interface RelayStarterDeps {
  store: FlowStore;
  upstream: RelayUpstream;
  clock: Clock;
  /** the gateway's cap on a flow's lifetime (s); the upstream's `expires_in` is used when shorter */
  codeTtlSeconds: number;
  maxFlowsPerDevice: number;
  leaseMs: number;
}

export class RelayStarter implements FlowStarter {
  readonly #d: RelayStarterDeps;
  /** deviceId → upstream device authorizations this instance has asked for and not yet stored */
  readonly #starting = new Map<string, number>();

  constructor(deps: RelayStarterDeps) {
    this.#d = deps;
  }

  async start(request: NewFlow): Promise<StartResult> {
    const { store, clock, maxFlowsPerDevice } = this.#d;
    // The same rid again is idempotent: answer with the flow that exists. Looking first means a repeat costs no
    // upstream call (and does not leave an unused device code at the upstream).
    const existing = await storeCall(() => store.get(request.deviceId, request.rid));
    if (existing !== undefined) return { status: 'exists', known: existing };

    const now = clock.now();
    const { deviceId } = request;
    const starting = this.#starting.get(deviceId) ?? 0;
    // Reserve the slot before the first await, so concurrent requests of this device see it.
    this.#starting.set(deviceId, starting + 1);
    try {
      if (starting + (await storeCall(() => store.liveCount(deviceId, now))) >= maxFlowsPerDevice) {
        throw limitError(maxFlowsPerDevice);
      }
      return await this.#create(request, now);
    } finally {
      const left = (this.#starting.get(deviceId) ?? 1) - 1;
      if (left > 0) this.#starting.set(deviceId, left);
      else this.#starting.delete(deviceId);
    }
  }

  /** Asks the upstream for a device authorization and stores the flow (the cap is checked again there). */
  async #create(request: NewFlow, now: number): Promise<StartResult> {
    const { store, upstream, codeTtlSeconds, maxFlowsPerDevice, leaseMs } = this.#d;
    const da = await upstream.startDeviceAuthorization(request.scope);
    const lifetime = Math.min(da.expiresIn, codeTtlSeconds);
    const flow: RelayFlow = {
      ...pendingBase(request, now),
      mode: 'device',
      expiresAt: now + lifetime * 1000,
      interval: da.interval,
      nextPollAt: now + da.interval * 1000,
      verificationUri: da.verificationUri,
      secrets: {
        userCode: da.userCode,
        deviceCode: da.deviceCode,
        ...(da.verificationUriComplete !== undefined && {
          verificationUriComplete: da.verificationUriComplete,
        }),
      },
    };
    const created = await storeCall(() =>
      store.create(flow, { now, maxLive: maxFlowsPerDevice, due: dueAt(flow, now, leaseMs) }),
    );
    return startResult(created, flow, maxFlowsPerDevice);
  }
}

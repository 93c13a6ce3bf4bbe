/**
 * Bridge mode's starter: the gateway issues the user code itself (RFC 8628 §6.1: L letters of a base-20 alphabet,
 * `DEVICEGATE_USER_CODE_LENGTH`) and creates the flow with the code reserved in the same store operation. A code
 * another live flow holds (a collision, about N/20^L per draw with N live flows) is drawn again, a few times at most.
 */
import type { Clock } from '../core/clock.ts';
import { formatUserCode, generateUserCode } from '../core/codes.ts';
import type { Keys } from '../core/crypto.ts';
import { dueAt } from '../core/engine.ts';
import type { BridgeFlow } from '../core/flow.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { FlowStore } from '../store/types.ts';
import { type FlowStarter, type NewFlow, type StartResult, pendingBase, startResult } from './starter.ts';
import { storeCall } from './store-call.ts';

/** Attempts at drawing a user code that no live flow holds. */
export const MAX_CODE_ATTEMPTS = 8;

/** The keyed hash a canonical user code (`XXXXXXXX`) is stored and looked up under. */
export function userCodeHash(keys: Keys, canonical: string): string {
  return keys.lookupHash('user_code', canonical);
}

export interface BridgeStarterDeps {
  store: FlowStore;
  keys: Keys;
  clock: Clock;
  metrics: Metrics;
  /** a flow's lifetime (s) */
  codeTtlSeconds: number;
  /** letters per user code */
  userCodeLength: number;
  /** recorded as the flow's interval (bridge flows are not polled) */
  pollIntervalSeconds: number;
  maxFlowsPerDevice: number;
  leaseMs: number;
}

export class BridgeStarter implements FlowStarter {
  readonly #d: BridgeStarterDeps;

  constructor(deps: BridgeStarterDeps) {
    this.#d = deps;
  }

  /** A repeated rid is found by the create itself (`exists`): one store round trip per new flow. */
  async start(request: NewFlow): Promise<StartResult> {
    const { store, keys, clock, metrics, codeTtlSeconds, maxFlowsPerDevice, leaseMs } = this.#d;
    const now = clock.now();
    const expiresAt = now + codeTtlSeconds * 1000;
    for (let attempt = 1; ; attempt++) {
      const canonical = generateUserCode(this.#d.userCodeLength);
      const flow: BridgeFlow = {
        ...pendingBase(request, now),
        mode: 'authorization_code',
        expiresAt,
        interval: this.#d.pollIntervalSeconds,
        secrets: { userCode: formatUserCode(canonical) },
      };
      const userCode = { hash: userCodeHash(keys, canonical), ttlMs: expiresAt - now };
      const due = dueAt(flow, now, leaseMs);
      const created = await storeCall(() =>
        store.create(flow, { now, maxLive: maxFlowsPerDevice, due, userCode }),
      );
      if (created.status === 'code_taken') metrics.inc('devicegate_user_code_collisions_total');
      if (created.status !== 'code_taken' || attempt >= MAX_CODE_ATTEMPTS) {
        return startResult(created, flow, maxFlowsPerDevice);
      }
    }
  }
}

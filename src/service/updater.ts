/**
 * Every state change of a stored flow: read → `apply` (pure, `src/core/engine.ts`) → compare-and-set, retried on
 * conflicts. Effects follow a successful write only: the schedule, then — when the engine says so — the device is
 * sent the flow's view, and a finished flow the broker took is marked delivered.
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { type FlowEvent, type Transition, apply, dueAt } from '../core/engine.ts';
import { serverError } from '../core/errors.ts';
import type { Flow } from '../core/flow.ts';
import { stateRank } from '../core/flow.ts';
import { type AuditEvent, audit } from '../observability/audit.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { FlowStore, Versioned } from '../store/types.ts';
import type { ReplyRoute } from '../transport/types.ts';
import type { GrantStore } from './grants.ts';
import { type Replies, tokenOf } from './replies.ts';
import { storeCall } from './store-call.ts';

/** Attempts of one compare-and-set loop before giving up with `server_error`. */
const MAX_CAS_ATTEMPTS = 8;

export interface UpdateOptions {
  deviceId: string;
  rid: string;
  event: FlowEvent;
  /** Write only while this lease is held (the scheduler's visits, the bridge callback). */
  leaseToken?: string | undefined;
  /** The flow as just read, to save the first read (it is read again after a conflict). */
  known?: Versioned | undefined;
  /** a device's request: where its answer goes (`Replies.send`); absent for pushed results */
  replyTo?: ReplyRoute | undefined;
  /** who caused the event, for the audit line of the flow's end: the person (`sub`) and their network */
  actor?: { subject?: string | undefined; network?: string | undefined } | undefined;
}

export type UpdateOutcome =
  | { status: 'ok'; transition: Transition; version: number }
  /** no such flow (never created, or its record expired) */
  | { status: 'missing' }
  /** `leaseToken` was given and the lease is no longer held with it: nothing was written or sent */
  | { status: 'lease_lost' };

export interface FlowUpdaterDeps {
  store: FlowStore;
  clock: Clock;
  /** the scheduler's lease (ms): how long after a result the scheduler looks again should delivery fail */
  leaseMs: number;
  grants: GrantStore;
  replies: Replies;
  metrics: Metrics;
  log: Logger;
}

export class FlowUpdater {
  readonly #d: FlowUpdaterDeps;

  constructor(deps: FlowUpdaterDeps) {
    this.#d = deps;
  }

  /**
   * Applies `event` to the stored flow and writes the result with compare-and-set, re-reading and re-applying after a
   * conflict (up to {@link MAX_CAS_ATTEMPTS}, then `server_error`). A token the device's key cannot receive turns
   * into a failure first (`Replies.deliverable`); a refresh token in the event is handed to the grant store (once),
   * never written into the flow; the grant that result replaced is revoked at the upstream once the device was served
   * (`GrantStore.revoke`, which never throws). Store failures throw `UnavailableError`.
   */
  async update(options: UpdateOptions): Promise<UpdateOutcome> {
    let replaced: string | undefined;
    try {
      return await this.#update(options, (r) => (replaced = r));
    } finally {
      // After the device was served (or the update gave up): a grant this authorization replaced is revoked.
      if (replaced !== undefined) await this.#d.grants.revoke(options.deviceId, replaced);
    }
  }

  async #update(options: UpdateOptions, onReplaced: (refreshToken: string) => void): Promise<UpdateOutcome> {
    const { deviceId, rid, leaseToken } = options;
    const { store, clock, leaseMs } = this.#d;
    let event = options.event;
    let current = options.known;
    let kept = false;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      current ??= await storeCall(() => store.get(deviceId, rid));
      if (current === undefined) return { status: 'missing' };
      if (!kept) {
        event = await this.#deliverable(current.flow, event);
        const k = await this.#d.grants.keep(current.flow, event);
        event = k.event;
        if (k.replaced !== undefined) onReplaced(k.replaced);
        kept = true;
      }
      const now = clock.now();
      const t = apply(current.flow, event, now);
      let version = current.version;
      if (t.changed) {
        const before = current.flow;
        const written = await storeCall(() =>
          store.update(t.flow, version, leaseToken === undefined ? { now } : { now, leaseToken }),
        );
        if (written.status === 'conflict' || written.status === 'regress') {
          current = undefined;
          continue;
        }
        if (written.status !== 'ok') return { status: written.status };
        version = written.version;
        await storeCall(() => store.schedule(deviceId, rid, dueAt(t.flow, now, leaseMs)));
        if (stateRank(t.flow.state) > stateRank(before.state)) this.#countFinish(t.flow, options.actor);
      }
      if (t.notify && leaseToken !== undefined && !t.changed) {
        // Nothing was written, so nothing proved the lease is still ours: check before publishing, or a paused
        // instance could push a result that another one has delivered already.
        if (!(await storeCall(() => store.acquireLease(deviceId, rid, leaseToken, now, leaseMs)))) {
          return { status: 'lease_lost' };
        }
      }
      if (t.notify) version = await this.#notify(t.flow, version, now, leaseToken, options.replyTo);
      return { status: 'ok', transition: t, version };
    }
    throw serverError('the request could not be updated; try again');
  }

  /**
   * `Replies.deliverable`; when it refuses a token, the refresh token that came with it is revoked at the upstream
   * (`GrantStore.revoke`, which never throws): no grant is kept for it, and no one else holds it.
   */
  async #deliverable(flow: Flow, event: FlowEvent): Promise<FlowEvent> {
    const result = await this.#d.replies.deliverable(flow, event);
    const dropped = tokenOf(event)?.refresh_token;
    if (result !== event && dropped !== undefined) await this.#d.grants.revoke(flow.deviceId, dropped);
    return result;
  }

  /** Re-derives the flow's due time from its state (the scheduler visited it and found nothing to do). */
  async reschedule(flow: Flow): Promise<void> {
    const now = this.#d.clock.now();
    await storeCall(() => this.#d.store.schedule(flow.deviceId, flow.rid, dueAt(flow, now, this.#d.leaseMs)));
  }

  /** Sends the device the flow's view; marks a finished flow delivered once the broker took it. */
  async #notify(
    flow: Flow,
    version: number,
    now: number,
    leaseToken: string | undefined,
    replyTo: ReplyRoute | undefined,
  ): Promise<number> {
    const { store, replies, leaseMs, clock } = this.#d;
    const sent = await replies.send(flow.deviceId, await replies.render(flow, now), replyTo);
    if (!sent || stateRank(flow.state) !== 1 || flow.deliveredAt !== undefined) return version;
    const t = apply(flow, { type: 'delivered' }, now);
    const written = await storeCall(() =>
      store.update(t.flow, version, leaseToken === undefined ? { now } : { now, leaseToken }),
    );
    if (written.status !== 'ok') return version;
    if (flow.state === 'authorized') {
      audit(this.#d.log, 'token.delivered', { deviceId: flow.deviceId, rid: flow.rid });
      // From the person's approval (bridge) or the start (relay: the approval happens at the upstream, unseen).
      const from = flow.mode === 'authorization_code' ? (flow.approvedAt ?? flow.createdAt) : flow.createdAt;
      this.#d.metrics.observe(
        'devicegate_approval_to_device_seconds',
        Math.max(0, (clock.now() - from) / 1000),
      );
    }
    await storeCall(() => store.schedule(flow.deviceId, flow.rid, dueAt(t.flow, now, leaseMs)));
    return written.version;
  }

  /** Counts a finished flow; the ends a person or the clock decides are audit events, the others a plain line. */
  #countFinish(flow: Flow, actor: UpdateOptions['actor']): void {
    this.#d.metrics.inc('devicegate_flows_finished_total', { state: flow.state });
    const { deviceId, rid } = flow;
    const event = FINISH_EVENTS[flow.state];
    if (event === undefined) {
      this.#d.log.info({ deviceId, rid, state: flow.state, error: flow.error?.code }, 'flow finished');
      return;
    }
    audit(this.#d.log, event, {
      deviceId,
      rid,
      mode: flow.mode,
      ...(actor?.subject !== undefined && { subject: actor.subject }),
      ...(actor?.network !== undefined && { network: actor.network }),
      ...(flow.error !== undefined && { reason: flow.error.code }),
    });
  }
}

/** The audit event of each way a flow can end (a cancelled or failed flow is logged, not audited). */
const FINISH_EVENTS: Partial<Record<Flow['state'], AuditEvent>> = {
  authorized: 'flow.approved',
  denied: 'flow.denied',
  expired: 'flow.expired',
};

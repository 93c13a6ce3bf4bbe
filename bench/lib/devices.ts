/**
 * Helpers for scenarios that follow whole flows on fleet devices, thin over the fleet client of firmware-sim/fleet.ts:
 * publish a request, collect every reply of a rid with its arrival time; and the admin calls of the fake upstream.
 */
import { request } from 'undici';
import { type FleetDevice, type Fleet, onFleetReply, sendRequest } from '../../firmware-sim/fleet.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';
import type { FakeUpstreamReport } from '../fake-upstream.ts';
import { nowMs } from './clock.ts';

export interface TimedReply {
  reply: DeviceReply;
  /** {@link nowMs} when the device received it */
  at: number;
}

/**
 * Follows one device's replies: `next(rid, status)` resolves with the first reply of that rid and status (arriving
 * after the call or already buffered).
 */
export class ReplyTap {
  readonly #buffered: TimedReply[] = [];
  readonly #waiters: Array<{ match(r: DeviceReply): boolean; resolve(r: TimedReply): void }> = [];

  constructor(device: FleetDevice, fleet: Fleet) {
    onFleetReply(fleet, device, (reply) => {
      const at = nowMs();
      const i = this.#waiters.findIndex((w) => w.match(reply));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve({ reply, at });
      else this.#buffered.push({ reply, at });
    });
  }

  next(rid: string, status: DeviceReply['status'], timeoutMs = 30_000): Promise<TimedReply> {
    const match = (r: DeviceReply) => r.rid === rid && r.status === status;
    const i = this.#buffered.findIndex((b) => match(b.reply));
    if (i >= 0) return Promise.resolve(this.#buffered.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (r: TimedReply) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      const timer = setTimeout(() => {
        const k = this.#waiters.indexOf(waiter);
        if (k >= 0) this.#waiters.splice(k, 1);
        reject(new Error(`no ${status} reply for ${rid} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }
}

/** Publishes `{prefix}/{id}/req/{action}` at QoS 1 and resolves once the broker acknowledged it. */
export function send(
  device: FleetDevice,
  fleet: Fleet,
  action: 'authorize' | 'ack' | 'status',
  body: object,
): Promise<void> {
  return sendRequest(fleet, device, action, body);
}

/** The fake upstream's admin calls. */
export const admin = {
  async approve(issuer: string, userCode: string): Promise<number> {
    const res = await request(`${issuer}/admin/approve?user_code=${encodeURIComponent(userCode)}`, {
      method: 'POST',
    });
    const body = (await res.body.json()) as { approvedAt?: number };
    if (res.statusCode !== 200 || body.approvedAt === undefined)
      throw new Error(`approve ${userCode}: HTTP ${res.statusCode}`);
    return body.approvedAt;
  },
  async now(issuer: string): Promise<number> {
    const res = await request(`${issuer}/admin/now`);
    return ((await res.body.json()) as { now: number }).now;
  },
  async report(issuer: string): Promise<FakeUpstreamReport> {
    const res = await request(`${issuer}/admin/report`);
    return (await res.body.json()) as FakeUpstreamReport;
  },
};

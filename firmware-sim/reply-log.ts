/**
 * The replies a {@link SimDevice} has received, per rid, and the `waitFor` calls still waiting on one. Kept apart from
 * the connection handling in `device.ts` so the matching rules (earlier replies count, a final failure for a rid
 * rejects its waiters) sit in one place.
 */
import { type TimerHandle, systemTimers } from '../src/core/clock.ts';
import { SimError } from './connection.ts';
import type { SimReply } from './replies.ts';

/** How many rids keep their replies; the oldest rid is forgotten first. */
export const HISTORY_RIDS = 64;

interface Waiter {
  rid: string;
  match: (r: SimReply) => boolean;
  resolve: (r: SimReply) => void;
  reject: (e: SimError) => void;
  timer: TimerHandle;
}

export class ReplyLog {
  readonly #history = new Map<string, SimReply[]>();
  readonly #waiters = new Set<Waiter>();

  /** The replies received so far for `rid`. */
  replies(rid: string): readonly SimReply[] {
    return this.#history.get(rid) ?? [];
  }

  /** Resolves with the next reply for `rid` that `match`es; rejects with `reply_timeout` after `timeoutMs`. */
  next(rid: string, match: (r: SimReply) => boolean, timeoutMs: number): Promise<SimReply> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        rid,
        match,
        resolve,
        reject,
        timer: systemTimers.setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(
            new SimError('reply_timeout', `no matching reply for ${rid} within ${timeoutMs} ms`, { rid }),
          );
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Keeps `reply` under its rid and resolves the waiters it matches. */
  record(rid: string, reply: SimReply): void {
    let list = this.#history.get(rid);
    if (list === undefined) {
      list = [];
      this.#history.set(rid, list);
      if (this.#history.size > HISTORY_RIDS) {
        const oldest = this.#history.keys().next().value;
        if (oldest !== undefined) this.#history.delete(oldest);
      }
    }
    list.push(reply);
    this.#settle(
      (w) => w.rid === rid && w.match(reply),
      (w) => w.resolve(reply),
    );
  }

  /** Rejects every waiter for `rid` with `err`. */
  fail(rid: string | undefined, err: SimError): void {
    this.#settle(
      (w) => w.rid === rid,
      (w) => w.reject(err),
    );
  }

  /** Rejects every waiter with `closed`. */
  close(): void {
    this.#settle(
      () => true,
      (w) => w.reject(new SimError('closed', 'the device is closed', { rid: w.rid })),
    );
  }

  #settle(which: (w: Waiter) => boolean, settle: (w: Waiter) => void): void {
    for (const w of this.#waiters) {
      if (!which(w)) continue;
      systemTimers.clear(w.timer);
      this.#waiters.delete(w);
      settle(w);
    }
  }
}

/**
 * The external broker's delivery self-check (docs/brokers.md). Some brokers — nats-server 2.9, RabbitMQ 3.10 with
 * `rabbitmq_mqtt`, a standalone aedes — grant `$share/{group}/{filter}` (SUBACK QoS 1) and then never deliver a
 * message through it. A granted SUBACK therefore proves nothing: after every (re)subscribe the gateway publishes a
 * canary request on `{prefix}/{its broker username}/req/selfcheck` (the `%u` line of a device ACL lets the gateway's
 * own user publish there; no device can authenticate as that user) and only calls itself ready once a canary came
 * back through the subscription.
 *
 * Any canary proves delivery, including another instance's: with a shared subscription the broker may hand this
 * instance's canary to another member of the group, so the check publishes again until one arrives or time is up.
 * A canary is recognised by its action and payload and is never handled as a device request.
 */
import type { TimerHandle, Timers } from '../core/clock.ts';

/** The last topic level of a canary: not a device action, so no device request is ever mistaken for one. */
export const SELF_CHECK_ACTION = 'selfcheck';
const MARK = 'devicegate-selfcheck';
/** How long a canary has to come back before `/readyz` reports the broker as not delivering. */
export const SELF_CHECK_TIMEOUT_MS = 5000;
/** A canary is published again this often while none has arrived (it may have gone to another instance). */
const REPUBLISH_MS = 250;

/** The canary's payload: the mark, and a nonce so a broker cannot collapse the repeats. */
export function canaryPayload(nonce: number): string {
  return JSON.stringify({ [MARK]: nonce });
}

/** True when a request on `req/{rawAction}` with `payload` is a canary (of this or another instance). */
export function isCanary(rawAction: string, payload: Buffer): boolean {
  if (rawAction !== SELF_CHECK_ACTION || payload.length > 64) return false;
  try {
    const body: unknown = JSON.parse(payload.toString('utf8'));
    return typeof body === 'object' && body !== null && MARK in body;
  } catch {
    return false;
  }
}

/**
 * One self-check run: publishes canaries until {@link arrived} is called or {@link SELF_CHECK_TIMEOUT_MS} passes.
 * `publish` failures (a connection that drops meanwhile) count as "not arrived"; the next subscribe starts a new run.
 */
export class DeliverySelfCheck {
  readonly #timers: Timers;
  readonly #publish: (payload: string) => Promise<void>;
  #done = false;
  #nonce = 0;
  #resolve: ((passed: boolean) => void) | undefined;
  #repeat: TimerHandle | undefined;
  #deadline: TimerHandle | undefined;

  constructor(o: { timers: Timers; publish: (payload: string) => Promise<void> }) {
    this.#timers = o.timers;
    this.#publish = o.publish;
  }

  /** Resolves `true` once a canary arrived, `false` when none did in time or {@link cancel} was called. */
  run(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      this.#resolve = resolve;
      const send = () => {
        this.#nonce += 1;
        void this.#publish(canaryPayload(this.#nonce)).catch(() => undefined);
      };
      send();
      this.#repeat = this.#timers.setInterval(send, REPUBLISH_MS);
      this.#deadline = this.#timers.setTimeout(() => this.#finish(false), SELF_CHECK_TIMEOUT_MS);
    });
  }

  /** A canary came back through the subscription. */
  arrived(): void {
    this.#finish(true);
  }

  /** Ends the run as failed (the connection is gone). */
  cancel(): void {
    this.#finish(false);
  }

  #finish(passed: boolean): void {
    if (this.#done) return;
    this.#done = true;
    this.#timers.clear(this.#repeat);
    this.#timers.clear(this.#deadline);
    this.#resolve?.(passed);
  }
}

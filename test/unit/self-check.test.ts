/**
 * The delivery self-check of the external broker (src/transport/self-check.ts) on fake time: canaries go out at once
 * and again every 250 ms until one comes back (it may have gone to another instance of the share group), the run
 * fails after 5 s without one, and only the canary's action with its marker payload is recognised as a canary.
 */
import { describe, expect, it } from 'vitest';
import {
  DeliverySelfCheck,
  SELF_CHECK_ACTION,
  SELF_CHECK_TIMEOUT_MS,
  canaryPayload,
  isCanary,
} from '../../src/transport/self-check.ts';
import { FakeTime } from '../helpers/clock.ts';

function setup(publish: (payload: string) => Promise<void> = async () => {}) {
  const time = new FakeTime();
  const sent: string[] = [];
  const check = new DeliverySelfCheck({
    timers: time,
    publish: async (payload) => {
      sent.push(payload);
      await publish(payload);
    },
  });
  return { time, sent, check };
}

describe('DeliverySelfCheck', () => {
  it('publishes again until a canary arrives, then passes and stops every timer', async () => {
    const { time, sent, check } = setup();
    const run = check.run();
    expect(sent).toHaveLength(1);
    await time.tick(600);
    expect(sent).toHaveLength(3);
    check.arrived();
    await expect(run).resolves.toBe(true);
    expect(time.pending).toBe(0);
    expect(new Set(sent).size).toBe(sent.length); // a nonce per canary
  });

  it('fails when no canary arrives in time, also when publishing fails', async () => {
    const { time, check } = setup(async () => {
      throw new Error('connection closed');
    });
    const run = check.run();
    let settled = false;
    void run.then(() => (settled = true));
    await time.tick(SELF_CHECK_TIMEOUT_MS - 1);
    expect(settled).toBe(false);
    await time.tick(1);
    await expect(run).resolves.toBe(false);
    expect(time.pending).toBe(0);
    check.arrived(); // too late: changes nothing
    await expect(run).resolves.toBe(false);
  });

  it('fails at once when cancelled (the connection is gone)', async () => {
    const { time, check } = setup();
    const run = check.run();
    check.cancel();
    await expect(run).resolves.toBe(false);
    expect(time.pending).toBe(0);
  });
});

describe('isCanary', () => {
  it('recognises the canary action with its marker payload only', () => {
    const canary = Buffer.from(canaryPayload(7));
    expect(isCanary(SELF_CHECK_ACTION, canary)).toBe(true);
    expect(isCanary('authorize', canary)).toBe(false);
    // a device's own req/selfcheck is a device request (answered invalid_request), not a canary
    expect(isCanary(SELF_CHECK_ACTION, Buffer.from('{"rid":"r1"}'))).toBe(false);
    expect(isCanary(SELF_CHECK_ACTION, Buffer.from('not json'))).toBe(false);
    expect(isCanary(SELF_CHECK_ACTION, Buffer.from('null'))).toBe(false);
    expect(isCanary(SELF_CHECK_ACTION, Buffer.from(JSON.stringify({ pad: 'x'.repeat(80) })))).toBe(false);
  });
});

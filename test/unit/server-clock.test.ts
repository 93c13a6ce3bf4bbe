import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/log.ts';
import { BURST, RESYNC_MS, ServerClock } from '../../src/store/redis/clock.ts';
import { FakeTime } from '../helpers/clock.ts';

/**
 * A host whose clock is `skew` ms ahead of the server's; the `n`th call (from 0) takes `legs(n)` = [ms to reach the
 * server, ms for the answer] (fake time moves during the call, as a real round trip would).
 */
function setup(o: { skew: number; legs: (n: number) => readonly [number, number] }) {
  const time = new FakeTime();
  const lines: Array<{ level: number; msg: string }> = [];
  const log = createLogger('info', { write: (line: string) => lines.push(JSON.parse(line)) });
  const server = { skew: o.skew, down: false, calls: 0 };
  const serverTime = async (): Promise<number> => {
    const [out, back] = o.legs(server.calls++);
    time.advance(out);
    if (server.down) throw new Error('connect ECONNREFUSED');
    const at = time.now() - server.skew;
    time.advance(back);
    return at;
  };
  const clock = new ServerClock({ local: time, timers: time, serverTime, log });
  return { time, clock, server, lines };
}

describe('ServerClock', () => {
  it('reads the server time from the local clock and the offset sampled at the round trip midpoint', async () => {
    const { time, clock } = setup({ skew: 15_000, legs: () => [40, 60] });
    await clock.start();
    // the midpoint guess is off by half the difference between the two legs: (60 - 40) / 2
    expect(clock.offsetMs).toBe(-15_000 - 10);
    expect(clock.now() - (time.now() - 15_000)).toBe(-10);
    clock.stop();
  });

  it('keeps, of a burst of samples, the one with the shortest round trip (the least a stretched leg can skew)', async () => {
    // every answer but the third comes back late (a busy event loop): each of those alone would be 150 ms off
    const { time, clock, server } = setup({ skew: 15_000, legs: (n) => (n === 2 ? [2, 2] : [0, 300]) });
    await clock.start();
    expect(server.calls).toBe(BURST);
    expect(clock.now()).toBe(time.now() - 15_000);
    clock.stop();
  });

  it('keeps a tight estimate through a resync whose samples are all loose but agree with it', async () => {
    // quick round trips at start, then a busy moment: each later sample alone would be 10 ms off
    const { time, clock } = setup({ skew: 15_000, legs: (n) => (n < BURST ? [1, 1] : [40, 60]) });
    await clock.start();
    expect(clock.now()).toBe(time.now() - 15_000);
    await time.tick(RESYNC_MS);
    expect(clock.now()).toBe(time.now() - 15_000);
    clock.stop();
  });

  it('follows a host clock stepped after the start, on the next resync', async () => {
    const { time, clock, server } = setup({ skew: 15_000, legs: () => [5, 5] });
    await clock.start();
    expect(clock.now()).toBe(time.now() - 15_000);
    // NTP steps the host clock 5 s further ahead: until the resync the old offset is used
    time.advance(5000);
    server.skew = 20_000;
    expect(clock.now()).toBe(time.now() - 15_000);
    await time.tick(RESYNC_MS);
    expect(clock.now()).toBe(time.now() - 20_000);
    clock.stop();
  });

  it('fails the start when the server cannot be reached (no instance runs on a time the others do not share)', async () => {
    const { clock, server, time } = setup({ skew: 0, legs: () => [1, 1] });
    server.down = true;
    await expect(clock.start()).rejects.toThrow(/ECONNREFUSED/);
    expect(time.pending).toBe(0);
  });

  it('says nothing about a resync still in flight when the clock is stopped (the gateway closed its client)', async () => {
    const time = new FakeTime();
    const lines: string[] = [];
    const log = createLogger('info', { write: (line: string) => lines.push(line) });
    let fail: ((err: Error) => void) | undefined;
    let calls = 0;
    const serverTime = (): Promise<number> =>
      calls++ < BURST ? Promise.resolve(time.now()) : new Promise((_, reject) => (fail = reject));
    const clock = new ServerClock({ local: time, timers: time, serverTime, log });
    await clock.start();
    await time.tick(RESYNC_MS);
    expect(fail).toBeDefined();
    clock.stop();
    fail!(new Error('Connection is closed.'));
    await time.tick(1);
    expect(lines.filter((l) => l.includes('could not sample'))).toEqual([]);
  });

  it('keeps the last offset while resyncs fail, logs the outage once and the recovery', async () => {
    const { time, clock, server, lines } = setup({ skew: -3000, legs: () => [1, 1] });
    await clock.start();
    server.down = true;
    await time.tick(3 * RESYNC_MS);
    expect(server.calls).toBe(BURST + 3);
    expect(clock.now()).toBe(time.now() + 3000);
    expect(lines.filter((l) => l.msg.includes('could not sample'))).toHaveLength(1);
    server.down = false;
    await time.tick(RESYNC_MS);
    expect(lines.filter((l) => l.msg.includes('sampled again'))).toHaveLength(1);
    clock.stop();
    expect(time.pending).toBe(0);
  });
});

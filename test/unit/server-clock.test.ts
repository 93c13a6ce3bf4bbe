import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/log.ts';
import { RESYNC_MS, ServerClock } from '../../src/store/redis/clock.ts';
import { FakeTime } from '../helpers/clock.ts';

/**
 * A host whose clock is `skew` ms ahead of the server's, talking to it with `out` ms to reach it and `back` ms for
 * the answer (fake time moves during the call, as a real round trip would).
 */
function setup(o: { skew: number; out: number; back: number }) {
  const time = new FakeTime();
  const lines: Array<{ level: number; msg: string }> = [];
  const log = createLogger('info', { write: (line: string) => lines.push(JSON.parse(line)) });
  const server = { skew: o.skew, out: o.out, back: o.back, down: false, calls: 0 };
  const serverTime = async (): Promise<number> => {
    server.calls++;
    time.advance(server.out);
    if (server.down) throw new Error('connect ECONNREFUSED');
    const at = time.now() - server.skew;
    time.advance(server.back);
    return at;
  };
  const clock = new ServerClock({ local: time, timers: time, serverTime, log });
  return { time, clock, server, lines };
}

describe('ServerClock', () => {
  it('reads the server time from the local clock and the offset sampled at the round trip midpoint', async () => {
    const { time, clock } = setup({ skew: 15_000, out: 40, back: 60 });
    await clock.start();
    // the midpoint guess is off by half the difference between the two legs: (60 - 40) / 2
    expect(clock.offsetMs).toBe(-15_000 - 10);
    expect(clock.now() - (time.now() - 15_000)).toBe(-10);
    clock.stop();
  });

  it('follows a host clock stepped after the start, on the next resync', async () => {
    const { time, clock, server } = setup({ skew: 15_000, out: 5, back: 5 });
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
    const { clock, server, time } = setup({ skew: 0, out: 1, back: 1 });
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
      ++calls === 1 ? Promise.resolve(time.now()) : new Promise((_, reject) => (fail = reject));
    const clock = new ServerClock({ local: time, timers: time, serverTime, log });
    await clock.start();
    await time.tick(RESYNC_MS);
    clock.stop();
    fail!(new Error('Connection is closed.'));
    await time.tick(1);
    expect(lines.filter((l) => l.includes('could not sample'))).toEqual([]);
  });

  it('keeps the last offset while resyncs fail, logs the outage once and the recovery', async () => {
    const { time, clock, server, lines } = setup({ skew: -3000, out: 1, back: 1 });
    await clock.start();
    server.down = true;
    await time.tick(3 * RESYNC_MS);
    expect(server.calls).toBe(4);
    expect(clock.now()).toBe(time.now() + 3000);
    expect(lines.filter((l) => l.msg.includes('could not sample'))).toHaveLength(1);
    server.down = false;
    await time.tick(RESYNC_MS);
    expect(lines.filter((l) => l.msg.includes('sampled again'))).toHaveLength(1);
    clock.stop();
    expect(time.pending).toBe(0);
  });
});

import { describe, expect, it } from 'vitest';
import { DeviceThrottle } from '../../src/service/throttle.ts';

describe('per-device throttle', () => {
  it('allows a burst, then asks to wait, then refills', () => {
    const t = new DeviceThrottle({ burst: 3, perSecond: 1, maxDevices: 10 });
    expect([t.take('a', 0), t.take('a', 0), t.take('a', 0)]).toEqual([0, 0, 0]);
    expect(t.take('a', 0)).toBe(1);
    expect(t.take('a', 500)).toBe(1);
    expect(t.take('a', 1500)).toBe(0);
    // another device is not affected
    expect(t.take('b', 0)).toBe(0);
  });
  it('forgets the least recently seen device when full', () => {
    const t = new DeviceThrottle({ burst: 1, perSecond: 0.001, maxDevices: 2 });
    expect(t.take('a', 0)).toBe(0);
    expect(t.take('b', 0)).toBe(0);
    expect(t.take('a', 0)).toBeGreaterThan(0);
    expect(t.take('c', 0)).toBe(0); // b is forgotten, a was seen last
    expect(t.take('b', 0)).toBe(0);
  });
  it('answers one refusal per window: the retry_after it was told', () => {
    const t = new DeviceThrottle({ burst: 1, perSecond: 0.5, maxDevices: 10 });
    expect(t.take('a', 0)).toBe(0);
    const wait = t.take('a', 0);
    expect(wait).toBe(2);
    expect(t.answerRefusal('a', 0, wait)).toBe(true);
    // refused again inside the window: not answered
    expect(t.take('a', 1000)).toBeGreaterThan(0);
    expect(t.answerRefusal('a', 1000, 1)).toBe(false);
    expect(t.answerRefusal('b', 1000, 1)).toBe(false); // a device the throttle does not know was never refused
    // the window has passed: the next refusal is answered again
    expect(t.take('a', 2000)).toBe(0);
    expect(t.take('a', 2000)).toBe(2);
    expect(t.answerRefusal('a', 2000, 2)).toBe(true);
  });
});

/** The attempt counter conformance suite on the memory counter, plus its bound on memory (fake clock). */
import { describe, expect, it } from 'vitest';
import { MemoryAttemptCounter } from '../../src/store/memory-attempts.ts';
import { FakeClock } from '../helpers/clock.ts';
import { attemptCounterConformance } from './store.contract.ts';

attemptCounterConformance('memory', async () => {
  const clock = new FakeClock();
  return { counter: new MemoryAttemptCounter(clock), clock, cleanup: async () => {} };
});

describe('memory attempt counter', () => {
  it('forgets a count that drops to 0, and drops expired counters once more than 1024 are held', async () => {
    const clock = new FakeClock();
    const counter = new MemoryAttemptCounter(clock);
    await counter.add('gone', 1, 60_000);
    await counter.add('gone', -1, 60_000);
    expect(counter.size).toBe(0);
    for (let i = 0; i < 1024; i++) await counter.add(`k${i}`, 1, 1000);
    expect(counter.size).toBe(1024);
    clock.advance(1000);
    await counter.add('live', 1, 1000);
    expect(counter.size).toBe(1);
  });
});

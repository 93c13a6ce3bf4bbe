/** The store conformance suite on the in-memory store, plus what only a fake clock can pin exactly. */
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../helpers/clock.ts';
import { deriveKeys } from '../../src/core/crypto.ts';
import { flowCodec } from '../../src/store/codec.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { pendingFlow, storeConformance } from './store.contract.ts';

const codec = flowCodec(deriveKeys('x'.repeat(32)));
const GRACE_MS = 200;

storeConformance('memory', async () => {
  const clock = new FakeClock();
  const store = new MemoryStore({ codec, clock, graceMs: GRACE_MS });
  return { store, clock, peer: () => store, cleanup: async () => {} };
});

describe('memory store: expiry on its clock', () => {
  it('keeps a record readable until expiresAt + grace, not one millisecond longer', async () => {
    const clock = new FakeClock();
    const store = new MemoryStore({ codec, clock, graceMs: GRACE_MS });
    const now = clock.now();
    const flow = pendingFlow('tv-1', 'r-1', now, { expiresAt: now + 1000 });
    await store.create(flow, { now, maxLive: 1 });
    clock.advance(1000 + GRACE_MS - 1);
    expect(await store.get('tv-1', 'r-1')).toEqual({ flow, version: 1 });
    clock.advance(1);
    expect(await store.get('tv-1', 'r-1')).toBeUndefined();
  });
});

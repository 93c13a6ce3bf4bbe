import { capturingLogger } from '../helpers/log.ts';
import { describe, expect, it } from 'vitest';
import { RequestDispatcher } from '../../src/transport/dispatcher.ts';
import type { IncomingRequest } from '../../src/transport/types.ts';

const request = (n: number, rawAction = 'status'): IncomingRequest => ({
  deviceId: `tv-${n}`,
  action: undefined,
  rawAction,
  payload: Buffer.from(`{"rid":"r-${n}"}`),
});

/** A handler whose calls stay running until the test finishes them. */
function controlledHandler() {
  const running = new Map<string, () => void>();
  const started: string[] = [];
  const handler = (req: IncomingRequest) =>
    new Promise<void>((resolve) => {
      started.push(req.deviceId);
      running.set(req.deviceId, resolve);
    });
  const finish = async (deviceId: string) => {
    running.get(deviceId)?.();
    running.delete(deviceId);
    // let the dispatcher's settle handlers run
    await new Promise((r) => setImmediate(r));
  };
  return { handler, started, finish };
}

describe('RequestDispatcher', () => {
  it('runs up to its limit at once, and starts waiting requests in arrival order as slots free', async () => {
    const h = controlledHandler();
    const d = new RequestDispatcher(h.handler, { limit: 2, log: capturingLogger([]) });
    const slots: string[] = [];
    for (const n of [1, 2, 3, 4]) d.dispatch(request(n), () => slots.push(`tv-${n}`));

    expect(h.started).toEqual(['tv-1', 'tv-2']);
    // the slot callback runs at once for a free slot, and not at all for a waiting request
    expect(slots).toEqual(['tv-1', 'tv-2']);
    expect([d.inFlight, d.waiting]).toEqual([2, 2]);

    await h.finish('tv-2');
    expect(h.started).toEqual(['tv-1', 'tv-2', 'tv-3']);
    expect(slots).toEqual(['tv-1', 'tv-2', 'tv-3']);
    expect([d.inFlight, d.waiting]).toEqual([2, 1]);

    await h.finish('tv-1');
    await h.finish('tv-3');
    expect(h.started).toEqual(['tv-1', 'tv-2', 'tv-3', 'tv-4']);
    await h.finish('tv-4');
    expect([d.inFlight, d.waiting]).toEqual([0, 0]);
  });

  it('logs a handler that throws or rejects, never throws itself, and frees the slot for the next request', async () => {
    const lines: string[] = [];
    const handled: string[] = [];
    const d = new RequestDispatcher(
      (req) => {
        handled.push(req.rawAction);
        if (req.rawAction === 'throw-sync') throw new Error('bug (sync)');
        if (req.rawAction === 'reject') return Promise.reject(new Error('bug (async)'));
        return Promise.resolve();
      },
      { limit: 1, log: capturingLogger(lines) },
    );
    expect(() => {
      d.dispatch(request(1, 'throw-sync'));
      d.dispatch(request(2, 'reject'));
      d.dispatch(request(3, 'fine'));
    }).not.toThrow();
    await d.drain();

    expect(handled).toEqual(['throw-sync', 'reject', 'fine']);
    const failures = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(failures).toEqual([
      expect.objectContaining({
        msg: 'device request handler failed',
        deviceId: 'tv-1',
        action: 'throw-sync',
        err: expect.objectContaining({
          type: 'Error',
          message: 'bug (sync)',
          stack: expect.stringContaining('dispatcher'),
        }),
      }),
      expect.objectContaining({
        msg: 'device request handler failed',
        deviceId: 'tv-2',
        action: 'reject',
        err: expect.objectContaining({ type: 'Error', message: 'bug (async)' }),
      }),
    ]);
    // the payload is never logged
    expect(lines.join('')).not.toContain('r-1');
  });

  it('drain() starts the waiting requests past the limit and resolves once none is running', async () => {
    const h = controlledHandler();
    const d = new RequestDispatcher(h.handler, { limit: 1, log: capturingLogger([]) });
    const slots: number[] = [];
    for (const n of [1, 2, 3]) d.dispatch(request(n), () => slots.push(n));
    let drained = false;
    const draining = d.drain().then(() => {
      drained = true;
    });

    expect(h.started).toEqual(['tv-1', 'tv-2', 'tv-3']);
    expect(slots).toEqual([1, 2, 3]);
    await h.finish('tv-1');
    await h.finish('tv-3');
    // a request dispatched while draining is waited for too
    d.dispatch(request(4));
    await h.finish('tv-2');
    expect(drained).toBe(false);
    await h.finish('tv-4');
    await draining;
    expect(drained).toBe(true);
  });

  it('drain() with nothing running resolves at once', async () => {
    const d = new RequestDispatcher(() => Promise.resolve(), { limit: 1, log: capturingLogger([]) });
    await expect(d.drain()).resolves.toBeUndefined();
  });

  it('refuses a limit that is not a positive integer', () => {
    const log = capturingLogger([]);
    for (const limit of [0, -1, 1.5, Number.NaN]) {
      expect(() => new RequestDispatcher(() => Promise.resolve(), { limit, log })).toThrow(
        /positive integer/,
      );
    }
  });

  it('queues per device and takes the devices round robin, refusing a device over its share and a full queue', async () => {
    const started: string[] = [];
    const finishers: Array<() => void> = [];
    const d = new RequestDispatcher(
      (req) =>
        new Promise<void>((resolve) => {
          started.push(`${req.deviceId}:${req.rawAction}`);
          finishers.push(resolve);
        }),
      { limit: 1, log: capturingLogger([]), queue: { capacity: 4, perDevice: 2 } },
    );
    const from = (deviceId: string, rawAction: string): IncomingRequest => ({
      ...request(0, rawAction),
      deviceId,
    });
    expect(d.dispatch(from('tv-busy', 'running'))).toBeUndefined();
    // the flooding device: two wait, the third is over its share
    expect(d.dispatch(from('tv-flood', 'a'))).toBeUndefined();
    expect(d.dispatch(from('tv-flood', 'b'))).toBeUndefined();
    expect(d.dispatch(from('tv-flood', 'c'))).toBe('device_share');
    expect(d.dispatch(from('tv-quiet', 'x'))).toBeUndefined();
    expect(d.load().saturated).toBe(false);
    expect(d.dispatch(from('tv-other', 'y'))).toBeUndefined();
    // every slot taken and the queue full: a new device is refused, and the load says so
    expect(d.dispatch(from('tv-late', 'z'))).toBe('queue_full');
    expect(d.load()).toEqual({
      saturated: true,
      detail: 'request queue saturated: 1 requests in flight, 4 waiting',
    });

    for (let i = 0; i < 5; i++) {
      finishers.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    // one turn per device per round, each device's own requests in order
    expect(started).toEqual(['tv-busy:running', 'tv-flood:a', 'tv-quiet:x', 'tv-other:y', 'tv-flood:b']);
    expect(d.load().saturated).toBe(false);
  });
});

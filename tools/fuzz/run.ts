/**
 * One fuzz run: warm up, take the baseline (heap, descriptors), run the JSON campaign and the packet campaign (with
 * slowloris beside it) while a control device keeps completing authorize → pending, then close every fuzz
 * connection and wait for heap and descriptors to come back. `runFuzz` is what `npm run fuzz` and
 * test/soak/fuzz.test.ts call.
 */
import { connectDevice, type TestDevice } from '../../test/helpers/device.ts';
import { createRng } from '../lib/rng.ts';
import { type Tally, jsonCampaign, packetCampaign, slowloris } from './clients.ts';
import { type FuzzTarget, FUZZ_KEY, startTarget } from './target.ts';

export interface FuzzOptions {
  seed: number;
  json: number;
  packets: number;
  devices: number;
  slowloris: number;
  say?: (line: string) => void;
}

export interface FuzzResult extends Tally {
  options: FuzzOptions;
  crashed: boolean;
  leaks: string[];
  controlOk: number;
  controlRuns: number;
  slowlorisOpen: number;
  heapDelta: number;
  fdDelta: number;
  pass: boolean;
}

/** heap may stay this much above the baseline (V8 collects when it likes; a leak of 10^5 requests is far larger) */
const HEAP_SLACK = 48 * 1024 * 1024;
const FD_SLACK = 2;

export async function runFuzz(o: FuzzOptions): Promise<FuzzResult> {
  const rng = createRng(o.seed);
  const say = o.say ?? (() => {});
  const target = await startTarget();
  const url = `mqtt://127.0.0.1:${target.mqttPort}`;
  const tally: Tally = { replies: 0, crossDevice: 0, disconnects: 0, packets: 0, cases: 0 };
  const control = await connectDevice({ url, deviceId: 'control', key: FUZZ_KEY, keepalive: 60 });
  const checks = { ok: 0, runs: 0 };
  try {
    // warm-up: lazily built parts (zod schemas, pools) are not a leak
    await jsonCampaign(url, rng.fork('warm'), 500, 2, { ...tally });
    await packetCampaign(target.mqttPort, rng.fork('warm'), 200, 4, { ...tally });
    await controlCheck(control, checks, tally);
    const base = { heap: await settledHeap(target, Infinity), fds: target.fds() };
    say(`fuzz: baseline heap ${mib(base.heap)} MiB, ${base.fds} descriptors`);
    const watching = watchControl(control, checks, tally);
    await jsonCampaign(url, rng.fork('json'), o.json, o.devices, tally);
    say(`fuzz: ${o.json} JSON payloads sent, ${tally.replies} replies`);
    const [, open] = await Promise.all([
      packetCampaign(target.mqttPort, rng.fork('packets'), o.packets, 16, tally),
      slowloris(target.mqttPort, o.slowloris, 500, 12_000),
    ]);
    say(`fuzz: ${tally.packets} malformed packets in ${tally.cases} connections`);
    await watching.stop();
    await controlCheck(control, checks, tally);
    const crashed = !(await target.healthy());
    const after = {
      heap: await settledHeap(target, base.heap + HEAP_SLACK),
      fds: await settledFds(target, base.fds + FD_SLACK),
    };
    const leaks = [
      ...(after.heap > base.heap + HEAP_SLACK ? [`heap +${mib(after.heap - base.heap)} MiB`] : []),
      ...(after.fds > base.fds + FD_SLACK ? [`descriptors +${after.fds - base.fds}`] : []),
      ...(open > 0 ? [`${open} slowloris connections still open`] : []),
    ];
    const pass = !crashed && leaks.length === 0 && tally.crossDevice === 0 && checks.ok === checks.runs;
    return {
      ...tally,
      options: o,
      crashed,
      leaks,
      controlOk: checks.ok,
      controlRuns: checks.runs,
      slowlorisOpen: open,
      heapDelta: after.heap - base.heap,
      fdDelta: after.fds - base.fds,
      pass,
    };
  } finally {
    await control.end();
    await target.close();
  }
}

/** authorize → pending for a fresh rid (then cancel it, so the control device never reaches its flow cap) */
async function controlCheck(
  control: TestDevice,
  checks: { ok: number; runs: number },
  tally: Tally,
): Promise<void> {
  const rid = `ctl-${++checks.runs}`;
  try {
    await control.ask('authorize', { rid }, { status: 'pending', timeoutMs: 15_000 });
    await control.request('cancel', { rid });
    checks.ok += 1;
  } catch {
    // counted as a failed check
  }
  tally.crossDevice += control.received.filter(
    (r) => !String(r.json?.['rid'] ?? 'ctl-').startsWith('ctl-') || r.topic !== control.resTopic,
  ).length;
  control.received.length = 0;
}

/** runs a control check every two seconds until stopped */
function watchControl(
  control: TestDevice,
  checks: { ok: number; runs: number },
  tally: Tally,
): { stop(): Promise<void> } {
  let running = true;
  const loop = (async () => {
    while (running) {
      await controlCheck(control, checks, tally);
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** the heap once it is at or below `limit`, or after 20 s, whichever first */
async function settledHeap(target: FuzzTarget, limit: number): Promise<number> {
  let heap = await target.heapUsed();
  for (let i = 0; i < 20 && !(heap <= limit); i++) {
    await new Promise((r) => setTimeout(r, 1000));
    heap = Math.min(heap, await target.heapUsed());
  }
  return heap;
}

/** the descriptor count once it is at or below `limit`, or after 20 s */
async function settledFds(target: FuzzTarget, limit: number): Promise<number> {
  let fds = target.fds();
  for (let i = 0; i < 40 && !(fds <= limit); i++) {
    await new Promise((r) => setTimeout(r, 500));
    fds = target.fds();
  }
  return fds;
}

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

/** The one final line of a run. */
export function fuzzFinalLine(r: FuzzResult): string {
  const o = r.options;
  return (
    `fuzz seed=${o.seed}: json=${o.json} packets=${r.packets} (${r.cases} connections) slowloris=${o.slowloris} ` +
    `replies=${r.replies} disconnects=${r.disconnects} crashes=${r.crashed ? 1 : 0} leaks=${r.leaks.length}` +
    `${r.leaks.length > 0 ? ` (${r.leaks.join(', ')})` : ''} control=${r.controlOk}/${r.controlRuns} ` +
    `cross-device=${r.crossDevice} heap=${r.heapDelta >= 0 ? '+' : ''}${mib(r.heapDelta)}MiB fds=${r.fdDelta >= 0 ? '+' : ''}${r.fdDelta} ` +
    `${r.pass ? 'PASS' : 'FAIL'}`
  );
}

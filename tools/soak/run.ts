/**
 * One soak run: start the cluster, connect the devices, let them run flows while the chaos schedule plays, stop
 * starting flows at the end of the duration, let the last ones finish, then judge. `runSoak` is what both
 * `npm run soak` and test/soak/soak.test.ts call.
 */
import { createRng } from '../lib/rng.ts';
import { type ChaosPlan, chaosSchedule, runChaos } from './chaos.ts';
import { startCluster, FLEET_KEY } from './cluster.ts';
import { SoakDevice } from './device.ts';
import { Ledger, type Verdict, judge } from './ledger.ts';

export interface SoakOptions extends ChaosPlan {
  seed: number;
  instances: number;
  devices: number;
  /** seconds during which devices start flows (the chaos schedule spans it) */
  durationS: number;
  latencyMs: { min: number; max: number };
  approveDelayMs: { min: number; max: number };
  thinkMs: { min: number; max: number };
  leaseMs: number;
  /** progress lines (chaos events); the final line is the caller's to print */
  say?: (line: string) => void;
}

export interface SoakResult extends Verdict {
  options: SoakOptions;
  kills: number;
  redisRestarts: number;
  mosquittoRestarts: number;
  stops: number;
}

const FLOW_DEADLINE_MS = 60_000;
/** a token issued this close to a SIGKILL may have lived only in the killed process */
const KILL_WINDOW_MS = 1_500;

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const rng = createRng(o.seed);
  const say = o.say ?? (() => {});
  const ids = Array.from({ length: o.devices }, (_, i) => `soak-${String(i).padStart(4, '0')}`);
  const events = chaosSchedule(o, o.durationS, o.instances, rng.fork('chaos'));
  const cluster = await startCluster({
    instances: o.instances,
    deviceIds: ids,
    latencyMs: o.latencyMs,
    leaseMs: o.leaseMs,
    rng,
  });
  const ledger = new Ledger();
  const settings = {
    brokerUrl: cluster.broker.url,
    fleetKey: FLEET_KEY,
    approveDelayMs: o.approveDelayMs,
    thinkMs: o.thinkMs,
    quietMs: 8_000,
    flowDeadlineMs: FLOW_DEADLINE_MS,
  };
  const devices = ids.map((id) => new SoakDevice(id, settings, rng.fork(id), ledger, cluster.upstream));
  try {
    await Promise.all(devices.map((d) => d.open()));
    const t0 = Date.now();
    const end = t0 + o.durationS * 1000;
    say(
      `soak: ${o.instances} instances, ${o.devices} devices, ${events.length} chaos events over ${o.durationS} s`,
    );
    const [chaos] = await Promise.all([
      runChaos(events, cluster, o, t0, o.durationS * 1000, say),
      ...devices.map((d) => d.run(() => Date.now() < end)),
    ]);
    const errorLogs = cluster.all.reduce(
      (n, g) => n + g.logs().filter((l) => (l.level ?? 0) >= 50).length,
      0,
    );
    const verdict = judge(ledger, cluster.upstream.report().device, chaos.kills, KILL_WINDOW_MS, errorLogs);
    const at = (t: number) => `+${((t - t0) / 1000).toFixed(1)}s`;
    for (const f of verdict.failures)
      say(`failed flow: ${f.device} ${f.rid} ${f.why}, started ${at(f.startedAt)}`);
    if (chaos.kills.length > 0) say(`kills at ${chaos.kills.map(at).join(' ')}`);
    return {
      ...verdict,
      options: o,
      kills: chaos.done.kill,
      redisRestarts: chaos.done.redis,
      mosquittoRestarts: chaos.done.mosquitto,
      stops: chaos.done.stop,
    };
  } finally {
    await Promise.allSettled(devices.map((d) => d.close()));
    await cluster.close();
  }
}

/** The one final line of a run. */
export function finalLine(r: SoakResult): string {
  const o = r.options;
  const perKill = r.kills === 0 ? '0' : (r.killWindow / r.kills).toFixed(2);
  return (
    `soak seed=${o.seed} instances=${o.instances} devices=${o.devices} duration=${o.durationS}s ` +
    `latency=${o.latencyMs.min}-${o.latencyMs.max}ms: flows=${r.flows} authorized=${r.authorized} lost=${r.lost} ` +
    `double=${r.double} cross-device=${r.crossDevice} wrong=${r.wrong} ` +
    `kill-window=${r.killWindow} (${perKill} per kill, ${r.kills} kills) replays=${r.replays} ` +
    `redis-restarts=${r.redisRestarts} mosquitto-restarts=${r.mosquittoRestarts} stops=${r.stops} ` +
    `error-logs=${r.errorLogs}${why(r.why)} ${r.pass ? 'PASS' : 'FAIL'}`
  );
}

function why(counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([k, n]) => `${k}:${n}`);
  return parts.length === 0 ? '' : ` why=${parts.join(',')}`;
}

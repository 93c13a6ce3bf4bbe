/**
 * The chaos schedule: SIGKILL and restart an instance every so often, restart Redis and Mosquitto, pause one instance
 * with SIGSTOP. Drawn from the seed before the run starts, so a run can be repeated event for event.
 */
import type { Rng } from '../lib/rng.ts';
import type { SoakCluster } from './cluster.ts';

export type ChaosKind = 'kill' | 'redis' | 'mosquitto' | 'stop';

export interface ChaosEvent {
  /** ms after the start of the run */
  at: number;
  kind: ChaosKind;
  /** the instance slot (kill, stop) */
  slot: number;
}

export interface ChaosPlan {
  /** seconds between kills (none when undefined) */
  killEveryS: { min: number; max: number } | undefined;
  redisRestarts: number;
  mosquittoRestarts: number;
  /** how long one instance is paused with SIGSTOP (0: never) */
  stopS: number;
  /** how long Redis and Mosquitto stay down when restarted */
  downS: number;
}

/** The events of a run of `durationS` seconds over `instances` slots, in time order. */
export function chaosSchedule(plan: ChaosPlan, durationS: number, instances: number, rng: Rng): ChaosEvent[] {
  const end = durationS * 1000;
  const events: ChaosEvent[] = [];
  // no chaos in the first and last tenth: the run needs a baseline, and the last flows time to finish
  const somewhere = () => rng.int(Math.round(end * 0.1), Math.round(end * 0.9));
  if (plan.killEveryS !== undefined) {
    for (let t = rng.int(plan.killEveryS.min, plan.killEveryS.max) * 1000; t < end * 0.9;) {
      events.push({ at: t, kind: 'kill', slot: rng.int(0, instances - 1) });
      t += rng.int(plan.killEveryS.min * 1000, plan.killEveryS.max * 1000);
    }
  }
  for (let i = 0; i < plan.redisRestarts; i++) events.push({ at: somewhere(), kind: 'redis', slot: 0 });
  for (let i = 0; i < plan.mosquittoRestarts; i++)
    events.push({ at: somewhere(), kind: 'mosquitto', slot: 0 });
  if (plan.stopS > 0) events.push({ at: somewhere(), kind: 'stop', slot: rng.int(0, instances - 1) });
  return events.sort((a, b) => a.at - b.at);
}

export interface ChaosLog {
  /** when (Date.now()) each SIGKILL was sent: the judge attributes tokens lost around these to the kill window */
  kills: number[];
  done: Record<ChaosKind, number>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `events` against the cluster from `t0` (Date.now() of the run's start), one after another. Each event is
 * finished (the process back up) before the next begins; an event whose time has passed runs at once.
 */
export async function runChaos(
  events: readonly ChaosEvent[],
  cluster: SoakCluster,
  plan: ChaosPlan,
  t0: number,
  endMs: number,
  say: (line: string) => void,
): Promise<ChaosLog> {
  const log: ChaosLog = { kills: [], done: { kill: 0, redis: 0, mosquitto: 0, stop: 0 } };
  for (const e of events) {
    // a restart that took long on a loaded machine pushes later events back; none runs after the soak's end
    if (Date.now() > t0 + endMs) break;
    await sleep(Math.max(0, t0 + e.at - Date.now()));
    say(
      `chaos +${Math.round((Date.now() - t0) / 1000)}s ${e.kind}${e.kind === 'kill' || e.kind === 'stop' ? ` ${cluster.slots[e.slot]!.name}` : ''}`,
    );
    await perform(e, cluster, plan, log);
    log.done[e.kind] += 1;
  }
  return log;
}

async function perform(e: ChaosEvent, cluster: SoakCluster, plan: ChaosPlan, log: ChaosLog): Promise<void> {
  switch (e.kind) {
    case 'kill': {
      const g = cluster.slots[e.slot]!;
      log.kills.push(Date.now());
      g.kill('SIGKILL');
      await g.waitExit();
      await cluster.restart(e.slot);
      return;
    }
    case 'stop': {
      const g = cluster.slots[e.slot]!;
      g.kill('SIGSTOP');
      await sleep(plan.stopS * 1000);
      g.kill('SIGCONT');
      return;
    }
    case 'redis':
      // SIGTERM: Redis flushes its AOF on the way down, as an operator's restart would
      await cluster.redis.stop('SIGTERM');
      await sleep(plan.downS * 1000);
      await cluster.redis.restart();
      return;
    case 'mosquitto':
      // SIGTERM: Mosquitto writes its persistence file on the way down
      await cluster.broker.stop('SIGTERM');
      await sleep(plan.downS * 1000);
      await cluster.broker.restart();
      return;
  }
}

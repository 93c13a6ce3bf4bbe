/**
 * Scenario 1 — flow starts per second. A fleet of simulated devices (firmware-sim fleet mode, in the runner process)
 * runs a closed loop: publish `req/authorize`, wait for the `pending` reply, publish `req/cancel` (untimed, so the
 * per-device cap on live flows is never reached), repeat.
 *
 * - devicegate: the real gateway in its own process (bridge mode, Redis store, embedded broker, HMAC device auth).
 * - baseline: the same devices against the same broker class (`EmbeddedBroker`: the same aedes options and hooks,
 *   HMAC auth) in its own process, with a trivial in-process responder that answers every request — authorize and
 *   cancel alike — with a fixed pending reply carrying the request's rid. Same message count both ways.
 *
 * Rounds alternate baseline and gateway so slow phases of a noisy machine hit both. A last, shorter gateway run is
 * profiled (V8 CPU profiler in the gateway process) to show where the time goes.
 */
import path from 'node:path';
import { connectFleet, runRoundTrips, type RoundTripResult } from '../../firmware-sim/fleet.ts';
import type { StartedInfo } from '../lib/host.ts';
import { type BenchContext, FLEET_KEY, gatewayEnv, privateRedis } from '../lib/context.ts';
import type { ProfileSummary } from '../lib/profile.ts';
import { CpuMeter, type CpuReport, spawnHost } from '../lib/procs.ts';
import { type ScenarioResult, median } from '../lib/report.ts';

interface Run {
  side: 'baseline' | 'devicegate';
  perSecond: number;
  p50: number;
  p99: number;
  completed: number;
  errors: number;
  errorCodes: Record<string, number>;
  cpu: CpuReport;
}

export async function flowStarts(ctx: BenchContext): Promise<ScenarioResult> {
  const devices = ctx.quick ? 100 : 200;
  const durationMs = ctx.quick ? 4000 : 10_000;
  const warmupMs = ctx.quick ? 1000 : 2000;
  const rounds = ctx.quick ? 1 : 2;
  const redis = await privateRedis();
  const upstream = await spawnHost('fake-upstream');
  const runs: Run[] = [];
  let profile: (ProfileSummary & { file?: string }) | undefined;
  try {
    const { issuer } = await upstream.call<StartedInfo>({ op: 'start-fake-upstream', options: {} });
    const env = gatewayEnv({ redisUrl: redis.proc.url, issuer: issuer!, mode: 'authorization_code' });

    const measure = async (side: Run["side"], withProfile = false): Promise<Run | (ProfileSummary & { file: string })> => {
      await redis.client.flushall();
      const host = await spawnHost(side === 'baseline' ? 'responder' : 'gateway');
      try {
        const started =
          side === 'baseline'
            ? await host.call<StartedInfo>({ op: 'start-responder', deviceKey: FLEET_KEY })
            : await host.call<StartedInfo>({ op: 'start-gateway', env });
        const fleet = await connectFleet({
          url: started.mqttUrl!,
          fleetKey: FLEET_KEY,
          devices,
          idPrefix: 'tv-',
          connectConcurrency: 50,
        });
        try {
          if (withProfile) {
            // warm up unprofiled, then profile a steady window
            await runRoundTrips(fleet, { durationMs: 1500 });
            await host.call({ op: 'profile-start' });
            await runRoundTrips(fleet, { durationMs: ctx.quick ? 2000 : 4000 });
            const file = path.join(ctx.resultsDir, 's1-gateway.cpuprofile.json');
            const summary = await host.call<ProfileSummary>({ op: 'profile-stop', file });
            return { ...summary, file: path.relative(process.cwd(), file) };
          }
          const pids: Record<string, number> = { [side]: host.pid, loadgen: process.pid };
          if (side === 'devicegate') pids.redis = redis.proc.pid;
          const meter = new CpuMeter(pids).start();
          const r: RoundTripResult = await runRoundTrips(fleet, { durationMs, warmupMs });
          const cpu = meter.stop();
          return {
            side,
            perSecond: r.perSecond,
            p50: r.latencyMs.p50,
            p99: r.latencyMs.p99,
            completed: r.completed,
            errors: r.errors,
            errorCodes: Object.fromEntries(r.errorCodes),
            cpu,
          };
        } finally {
          await fleet.close();
        }
      } finally {
        await host.stop();
      }
    };

    for (let round = 0; round < rounds; round++) {
      for (const side of ['baseline', 'devicegate'] as const) {
        const r = (await measure(side)) as Run;
        runs.push(r);
        ctx.log(
          `  round ${round + 1} ${side}: ${Math.round(r.perSecond)} rt/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(
            2,
          )} ms, errors ${r.errors}, cpu ${JSON.stringify(r.cpu.processes)} foreign ${r.cpu.foreign}%`,
        );
      }
    }
    if (ctx.profile) profile = (await measure('devicegate', true)) as ProfileSummary & { file?: string };
  } finally {
    await upstream.stop();
    await redis.close();
  }

  const of = (side: Run['side']) => runs.filter((r) => r.side === side);
  const gw = of('devicegate');
  const base = of('baseline');
  const rate = { gw: median(gw.map((r) => r.perSecond)), base: median(base.map((r) => r.perSecond)) };
  const p99 = { gw: median(gw.map((r) => r.p99)), base: median(base.map((r) => r.p99)) };
  const p50 = { gw: median(gw.map((r) => r.p50)), base: median(base.map((r) => r.p50)) };
  const errors = gw.reduce((a, r) => a + r.errors, 0);
  const notes: string[] = [];
  if (errors > 0) notes.push(`${errors} gateway round trips ended in an error reply or no reply`);
  return {
    id: 1,
    title: 'flow starts',
    rows: [
      {
        metric: 'round trips/s (authorize → pending)',
        unit: 'rt/s',
        devicegate: rate.gw,
        baseline: rate.base,
        goal: '≥ 0.5 × baseline',
        met: rate.gw >= 0.5 * rate.base,
      },
      { metric: 'latency p50', unit: 'ms', devicegate: p50.gw, baseline: p50.base },
      { metric: 'latency p99', unit: 'ms', devicegate: p99.gw, baseline: p99.base, goal: 'reported' },
    ],
    setup: { devices, durationMs, warmupMs, rounds, mode: 'authorization_code (bridge)', store: 'redis' },
    cpu: Object.fromEntries(runs.map((r, i) => [`${r.side}#${Math.floor(i / 2) + 1}`, r.cpu])),
    details: { runs },
    notes,
    ...(profile !== undefined && { profile }),
  };
}

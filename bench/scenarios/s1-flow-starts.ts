/**
 * Scenario 1 — flow starts per second. A fleet of simulated devices (firmware-sim fleet mode, in the runner process)
 * runs a closed loop, one request in flight per device: publish `req/authorize` with a fresh rid, wait for the
 * `pending` reply (the timed round trip), repeat. Two variants:
 *
 * - `cancel` (the fleet's default): after each `pending` the device publishes `req/cancel` (untimed), so it never
 *   reaches the cap on live flows; the gateway handles a flow start and a flow end per round trip. 200 devices.
 * - `pending`: flows stay pending, as they do while people approve; 1000 devices, the per-device cap raised to 100.
 *
 * - devicegate: the real gateway in its own process (bridge mode, Redis store, embedded broker, HMAC device auth,
 *   info-level logs to /dev/null).
 * - baseline: the same devices against the same broker class (`EmbeddedBroker`: the same aedes options and hooks,
 *   HMAC auth) in its own process, with a trivial in-process responder that answers every request — authorize and
 *   cancel alike — with a fixed pending reply carrying the request's rid. Same message count both ways.
 *
 * Rounds alternate baseline and gateway so slow phases of a noisy machine hit both. Last, a shorter gateway run of
 * each variant is profiled (V8 CPU profiler in the gateway process) to show where the time goes.
 */
import path from 'node:path';
import { connectFleet, runRoundTrips, type RoundTripResult } from '../../firmware-sim/fleet.ts';
import type { StartedInfo } from '../lib/host.ts';
import { type BenchContext, FLEET_KEY, gatewayEnv, privateRedis } from '../lib/context.ts';
import type { ProfileSummary } from '../lib/profile.ts';
import { CpuMeter, type CpuReport, spawnHost } from '../lib/procs.ts';
import { type Row, type ScenarioResult, median } from '../lib/report.ts';

type Side = 'baseline' | 'devicegate';
type Variant = 'cancel' | 'pending';

interface Run {
  side: Side;
  variant: Variant;
  devices: number;
  perSecond: number;
  p50: number;
  p99: number;
  completed: number;
  errors: number;
  errorCodes: Record<string, number>;
  cpu: CpuReport;
}

/** CPU time of the answering process (gateway or responder) per completed round trip, µs. */
function cpuPerRoundTrip(r: Run): number {
  const pct = r.cpu.processes[r.side] ?? Number.NaN;
  return ((pct / 100) * 1e6) / r.perSecond;
}

export async function flowStarts(ctx: BenchContext): Promise<ScenarioResult> {
  const devicesOf: Record<Variant, number> = {
    cancel: ctx.quick ? 100 : 200,
    pending: ctx.quick ? 500 : 1000,
  };
  const durationMs = ctx.quick ? 4000 : 10_000;
  const warmupMs = ctx.quick ? 1000 : 2000;
  const plan: Variant[] = ctx.quick ? ['cancel', 'pending'] : ['cancel', 'pending', 'cancel'];
  const redis = await privateRedis();
  const upstream = await spawnHost('fake-upstream');
  const runs: Run[] = [];
  const profiles: Record<string, ProfileSummary & { file: string }> = {};
  try {
    const { issuer } = await upstream.call<StartedInfo>({ op: 'start-fake-upstream', options: {} });
    const envOf = (variant: Variant) =>
      gatewayEnv({
        redisUrl: redis.proc.url,
        issuer: issuer!,
        mode: 'authorization_code',
        ...(variant === 'pending' && { extra: { DEVICEGATE_MAX_FLOWS_PER_DEVICE: '100' } }),
      });

    type Profiled = ProfileSummary & { file: string };
    const measure = async (side: Side, variant: Variant, withProfile = false): Promise<Run | Profiled> => {
      await redis.client.flushall();
      const host = await spawnHost(side === 'baseline' ? 'responder' : 'gateway');
      const devices = devicesOf[variant];
      const cancel = variant === 'cancel';
      try {
        const started =
          side === 'baseline'
            ? await host.call<StartedInfo>({ op: 'start-responder', deviceKey: FLEET_KEY })
            : await host.call<StartedInfo>({ op: 'start-gateway', env: envOf(variant) });
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
            await runRoundTrips(fleet, { durationMs: 1500, cancel });
            await host.call({ op: 'profile-start' });
            await runRoundTrips(fleet, { durationMs: ctx.quick ? 2000 : 4000, cancel });
            const file = path.join(ctx.resultsDir, `s1-${variant}-gateway.cpuprofile.json`);
            const summary = await host.call<ProfileSummary>({ op: 'profile-stop', file });
            return { ...summary, file: path.relative(process.cwd(), file) };
          }
          const pids: Record<string, number> = { [side]: host.pid, loadgen: process.pid };
          if (side === 'devicegate') pids.redis = redis.proc.pid;
          const meter = new CpuMeter(pids).start();
          const r: RoundTripResult = await runRoundTrips(fleet, { durationMs, warmupMs, cancel });
          const cpu = meter.stop();
          return {
            side,
            variant,
            devices,
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

    for (const [i, variant] of plan.entries()) {
      const sides: Side[] = i % 2 === 0 ? ['baseline', 'devicegate'] : ['devicegate', 'baseline'];
      for (const side of sides) {
        const r = (await measure(side, variant)) as Run;
        runs.push(r);
        ctx.log(
          `  ${variant.padEnd(7)} ${side.padEnd(10)} ${Math.round(r.perSecond)} rt/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(
            2,
          )} ms, errors ${r.errors}, ${Math.round(cpuPerRoundTrip(r))} µs CPU/rt, cpu ${JSON.stringify(
            r.cpu.processes,
          )} foreign ${r.cpu.foreign}% steal ${r.cpu.steal}%`,
        );
      }
    }
    if (ctx.profile) {
      for (const variant of ['cancel', 'pending'] as const) {
        profiles[variant] = (await measure('devicegate', variant, true)) as Profiled;
      }
    }
  } finally {
    await upstream.stop();
    await redis.close();
  }

  const pick = (side: Side, variant: Variant, f: (r: Run) => number) =>
    median(runs.filter((r) => r.side === side && r.variant === variant).map(f));
  const rows: Row[] = [];
  const notes: string[] = [];
  for (const variant of ['cancel', 'pending'] as const) {
    const label =
      variant === 'cancel'
        ? `${devicesOf.cancel} devices, each flow cancelled`
        : `${devicesOf.pending} devices, flows stay pending`;
    const rate = {
      gw: pick('devicegate', variant, (r) => r.perSecond),
      base: pick('baseline', variant, (r) => r.perSecond),
    };
    rows.push(
      {
        metric: `round trips/s, authorize → pending (${label})`,
        unit: 'rt/s',
        devicegate: rate.gw,
        baseline: rate.base,
        goal: '≥ 0.5 × baseline',
        met: rate.gw >= 0.5 * rate.base,
      },
      {
        metric: `latency p50 (${variant})`,
        unit: 'ms',
        devicegate: pick('devicegate', variant, (r) => r.p50),
        baseline: pick('baseline', variant, (r) => r.p50),
      },
      {
        metric: `latency p99 (${variant})`,
        unit: 'ms',
        devicegate: pick('devicegate', variant, (r) => r.p99),
        baseline: pick('baseline', variant, (r) => r.p99),
        goal: 'reported',
      },
      {
        metric: `CPU of the answering process per round trip (${variant})`,
        unit: 'µs',
        devicegate: pick('devicegate', variant, cpuPerRoundTrip),
        baseline: pick('baseline', variant, cpuPerRoundTrip),
      },
    );
    const errors = runs
      .filter((r) => r.side === 'devicegate' && r.variant === variant)
      .reduce((a, r) => a + r.errors, 0);
    if (errors > 0)
      notes.push(`${variant}: ${errors} gateway round trips ended in an error reply or no reply`);
  }
  return {
    id: 1,
    title: 'flow starts',
    rows,
    setup: {
      devices: devicesOf,
      durationMs,
      warmupMs,
      plan,
      mode: 'authorization_code (bridge)',
      store: 'redis',
    },
    cpu: Object.fromEntries(runs.map((r, i) => [`${r.variant}-${r.side}#${i + 1}`, r.cpu])),
    details: { runs, ...(profiles.cancel !== undefined && { profiles }) },
    notes,
    ...(profiles.pending !== undefined && { profile: profiles.pending }),
  };
}

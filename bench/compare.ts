/**
 * A/B comparison of two versions of the gateway on scenario 1's load (bridge mode, Redis, embedded broker, the fleet
 * in this process, authorize → pending; `cancel` variant: 200 devices cancelling each flow, `pending`: 1000 devices
 * whose flows stay pending, cap 100): the two versions run alternately, round after round,
 * so a machine that is slower for a while slows both. Reports round trips per second and the gateway's CPU time per
 * round trip for each run, and the medians. This is how each optimisation in BENCHMARKS.md was measured.
 *
 *   npx tsx bench/compare.ts --before /tmp/dg-before [--rounds 4] [--seconds 6] [--variant cancel|pending]
 *   npx tsx bench/compare.ts --after-env DEVICEGATE_LOG_LEVEL=warn
 *
 * `--before` is another checkout of the project (its node_modules may be a symlink to this one's); this checkout is
 * "after" (without `--before` both sides run this checkout). Only the gateway process runs the other checkout's
 * code; the load generator is this one's. `--before-env` / `--after-env K=V` (repeatable) add gateway settings to
 * one side.
 */
import { parseArgs } from 'node:util';
import { connectFleet, runRoundTrips } from '../firmware-sim/fleet.ts';
import { stopAll } from '../test/helpers/procs.ts';
import { FLEET_KEY, gatewayEnv, privateRedis } from './lib/context.ts';
import type { StartedInfo } from './lib/host.ts';
import { CpuMeter, spawnHost, stopAllHosts } from './lib/procs.ts';
import { median } from './lib/report.ts';

const { values } = parseArgs({
  options: {
    before: { type: 'string' },
    rounds: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '6' },
    devices: { type: 'string' },
    variant: { type: 'string', default: 'cancel' },
    'before-env': { type: 'string', multiple: true, default: [] },
    'after-env': { type: 'string', multiple: true, default: [] },
  },
});
const envOf = (list: string[]) =>
  Object.fromEntries(
    list.map((kv) => {
      const i = kv.indexOf('=');
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  );
const extraEnv = { before: envOf(values['before-env']), after: envOf(values['after-env']) };
const rounds = Number(values.rounds);
const durationMs = Number(values.seconds) * 1000;
const variant = values.variant === 'pending' ? 'pending' : 'cancel';
const devices = Number(values.devices ?? (variant === 'pending' ? 1000 : 200));
const cancel = variant === 'cancel';
const trees = { before: values.before, after: undefined } as const;

const redis = await privateRedis();
const upstream = await spawnHost('fake-upstream');
const results: Record<'before' | 'after', Array<{ rtps: number; cpuUs: number }>> = { before: [], after: [] };
try {
  const { issuer } = await upstream.call<StartedInfo>({ op: 'start-fake-upstream', options: {} });
  const base = gatewayEnv({
    redisUrl: redis.proc.url,
    issuer: issuer!,
    mode: 'authorization_code',
    ...(variant === 'pending' && { extra: { DEVICEGATE_MAX_FLOWS_PER_DEVICE: '100' } }),
  });
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
    for (const which of order) {
      await redis.client.flushall();
      const host = await spawnHost(`gateway-${which}`, [], trees[which]);
      try {
        const env = { ...base, ...extraEnv[which] };
        const started = await host.call<StartedInfo>({ op: 'start-gateway', env });
        const fleet = await connectFleet({
          url: started.mqttUrl!,
          fleetKey: FLEET_KEY,
          devices,
          idPrefix: 'tv-',
        });
        try {
          await runRoundTrips(fleet, { durationMs: 1500, cancel });
          const meter = new CpuMeter({ gateway: host.pid }).start();
          const r = await runRoundTrips(fleet, { durationMs, cancel });
          const cpu = meter.stop();
          const cpuUs = (((cpu.processes.gateway ?? 0) / 100) * 1e6) / r.perSecond;
          results[which].push({ rtps: r.perSecond, cpuUs });
          console.log(
            `round ${round + 1} ${which.padEnd(6)} ${Math.round(r.perSecond)} rt/s  ${Math.round(cpuUs)} µs CPU/rt  errors ${r.errors}  foreign ${cpu.foreign}%`,
          );
        } finally {
          await fleet.close();
        }
      } finally {
        await host.stop();
      }
    }
  }
} finally {
  await upstream.stop();
  await redis.close();
  await stopAllHosts();
  await stopAll();
}
const m = (w: 'before' | 'after', f: 'rtps' | 'cpuUs') => median(results[w].map((r) => r[f]));
console.log(
  `median  before ${Math.round(m('before', 'rtps'))} rt/s ${Math.round(m('before', 'cpuUs'))} µs/rt   after ${Math.round(
    m('after', 'rtps'),
  )} rt/s ${Math.round(m('after', 'cpuUs'))} µs/rt   rt/s ×${(m('after', 'rtps') / m('before', 'rtps')).toFixed(2)}, CPU/rt ×${(
    m('after', 'cpuUs') / m('before', 'cpuUs')
  ).toFixed(2)}`,
);
process.exit(0);

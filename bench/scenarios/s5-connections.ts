/**
 * Scenario 5 — connections. N devices (20 000, fewer if the open-files limit does not allow that many sockets in
 * one process) connect with their HMAC credentials and subscribe to their own `res` topic (firmware-sim fleet mode,
 * split over two load-generator processes, 50 connects in flight each). Measured: connects per second over the
 * whole burst, connect latency, and the broker process's RSS and V8 heap per connection (after a forced GC, minus
 * the same before the burst).
 *
 * - devicegate: the real gateway (bridge mode, Redis) with its embedded broker checking every CONNECT's HMAC
 *   password, the topic ACL hooks and the frame guard.
 * - baseline: the same aedes with no authentication and no hooks at all (`Aedes.createBroker()` on a noDelay
 *   listener), in its own process, driven by the same load generators in the same run.
 * - also shown: the gateway with `DEVICEGATE_DEVICE_AUTH=none` (hooks, no HMAC), which tells the HMAC's share.
 *
 * Rounds alternate the order of the variants.
 */
import type { FleetInfo, MemoryInfo, StartedInfo } from '../lib/host.ts';
import { type BenchContext, FLEET_KEY, gatewayEnv, privateRedis } from '../lib/context.ts';
import { sleep } from '../lib/clock.ts';
import { CpuMeter, type CpuReport, rssBytes, spawnHost } from '../lib/procs.ts';
import { type ScenarioResult, median } from '../lib/report.ts';

type Variant = 'baseline' | 'devicegate' | 'devicegate-auth-none';

interface Run {
  variant: Variant;
  devices: number;
  connectsPerSecond: number;
  connectP99: number;
  rssPerConnection: number;
  heapPerConnection: number;
  cpu: CpuReport;
}

const WANTED = 20_000;
const LOADGENS = 2;

export async function connections(ctx: BenchContext): Promise<ScenarioResult> {
  const rounds = ctx.quick ? 1 : 2;
  const wanted = ctx.quick ? 4000 : WANTED;
  const redis = await privateRedis();
  const upstream = await spawnHost('fake-upstream');
  const runs: Run[] = [];
  const notes: string[] = [];
  let devices = wanted;
  try {
    const { issuer } = await upstream.call<StartedInfo>({ op: 'start-fake-upstream', options: {} });
    const run = async (variant: Variant, round: number): Promise<Run> => {
      await redis.client.flushall();
      const broker = await spawnHost(variant);
      const loadgens = await Promise.all(
        Array.from({ length: LOADGENS }, (_, i) => spawnHost(`loadgen-${i}`)),
      );
      try {
        const started =
          variant === 'baseline'
            ? await broker.call<StartedInfo>({ op: 'start-bare-aedes' })
            : await broker.call<StartedInfo>({
                op: 'start-gateway',
                env: gatewayEnv({
                  redisUrl: redis.proc.url,
                  issuer: issuer!,
                  mode: 'authorization_code',
                  ...(variant === 'devicegate-auth-none' && { extra: { DEVICEGATE_DEVICE_AUTH: 'none' } }),
                }),
              });
        // one socket per device, plus what the process itself holds open
        devices = Math.min(wanted, started.maxOpenFiles - 200);
        await sleep(300);
        const before = await broker.call<MemoryInfo>({ op: 'memory', gc: true });
        const rssBefore = rssBytes(broker.pid);
        const pids: Record<string, number> = { broker: broker.pid };
        loadgens.forEach((l, i) => (pids[`loadgen-${i}`] = l.pid));
        const meter = new CpuMeter(pids).start();
        const share = Math.ceil(devices / LOADGENS);
        const fleets = await Promise.all(
          loadgens.map((l, i) =>
            l.call<FleetInfo>({
              op: 'connect-fleet',
              url: started.mqttUrl!,
              devices: Math.min(share, devices - i * share),
              idPrefix: `r${round}-l${i}-`,
              fleetKey: FLEET_KEY,
              concurrency: 50,
            }),
          ),
        );
        const cpu = meter.stop();
        await sleep(500);
        const after = await broker.call<MemoryInfo>({ op: 'memory', gc: true });
        const rssAfter = rssBytes(broker.pid);
        const connected = fleets.reduce((a, f) => a + f.connected, 0);
        const seconds =
          (Math.max(...fleets.map((f) => f.endedAt)) - Math.min(...fleets.map((f) => f.startedAt))) / 1000;
        await Promise.all(loadgens.map((l) => l.call({ op: 'close-fleet' })));
        return {
          variant,
          devices: connected,
          connectsPerSecond: connected / seconds,
          connectP99: Math.max(...fleets.map((f) => f.connectP99)),
          rssPerConnection: (rssAfter - rssBefore) / connected,
          heapPerConnection: (after.heapUsed - before.heapUsed) / connected,
          cpu,
        };
      } finally {
        await Promise.all([...loadgens, broker].map((h) => h.stop()));
      }
    };
    const order: Variant[] = ['baseline', 'devicegate', 'devicegate-auth-none'];
    for (let round = 0; round < rounds; round++) {
      for (const variant of round % 2 === 0 ? order : [...order].reverse()) {
        const r = await run(variant, round);
        runs.push(r);
        ctx.log(
          `  round ${round + 1} ${variant}: ${r.devices} devices, ${Math.round(r.connectsPerSecond)} connects/s, p99 ${r.connectP99.toFixed(
            1,
          )} ms, RSS ${Math.round(r.rssPerConnection)} B/conn, heap ${Math.round(r.heapPerConnection)} B/conn, cpu ${JSON.stringify(
            r.cpu.processes,
          )} foreign ${r.cpu.foreign}%`,
        );
      }
    }
  } finally {
    await upstream.stop();
    await redis.close();
  }
  if (devices < wanted) {
    notes.push(
      `${devices} devices instead of ${wanted}: the open-files limit (ulimit -n) of this machine caps the sockets one process may hold`,
    );
  }
  const of = (v: Variant, f: (r: Run) => number) => median(runs.filter((r) => r.variant === v).map(f));
  const rate = {
    gw: of('devicegate', (r) => r.connectsPerSecond),
    base: of('baseline', (r) => r.connectsPerSecond),
  };
  return {
    id: 5,
    title: 'connections',
    rows: [
      {
        metric: `connects/s, ${devices.toLocaleString('en-US')} devices (baseline: aedes, no auth)`,
        unit: 'conn/s',
        devicegate: rate.gw,
        baseline: rate.base,
        goal: '≥ 0.8 × baseline',
        met: rate.gw >= 0.8 * rate.base,
      },
      {
        metric: 'connect latency p99',
        unit: 'ms',
        devicegate: of('devicegate', (r) => r.connectP99),
        baseline: of('baseline', (r) => r.connectP99),
      },
      {
        metric: 'broker process RSS per connection',
        unit: 'B',
        devicegate: of('devicegate', (r) => r.rssPerConnection),
        baseline: of('baseline', (r) => r.rssPerConnection),
      },
      {
        metric: 'broker process heap per connection',
        unit: 'B',
        devicegate: of('devicegate', (r) => r.heapPerConnection),
        baseline: of('baseline', (r) => r.heapPerConnection),
      },
      {
        metric: 'connects/s with DEVICE_AUTH=none (hooks, no HMAC)',
        unit: 'conn/s',
        devicegate: of('devicegate-auth-none', (r) => r.connectsPerSecond),
        baseline: rate.base,
      },
    ],
    setup: { devices, wanted, loadGenerators: LOADGENS, connectConcurrency: 50 * LOADGENS, rounds },
    cpu: Object.fromEntries(runs.map((r, i) => [`${r.variant}#${Math.floor(i / 3) + 1}`, r.cpu])),
    details: { runs },
    notes,
  };
}

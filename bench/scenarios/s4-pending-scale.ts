/**
 * Scenario 4 — pending flows at scale, through the real gateway (bridge mode, private redis-server, the default key
 * prefix), in two parts:
 *
 * A. Redis memory per pending flow, as in the field: min(N, 100 000) devices with one pending flow each. Batches of
 *    1000 devices connect, start a flow and disconnect (a process may hold at most 20 000 open files here).
 *    `INFO memory` used_memory after − before, divided by the flows; `MEMORY USAGE` and the encoding of one key of
 *    each kind say where it goes. Baseline: the least Redis could hold — one string key per flow, named like the
 *    flow keys, holding a real flow's stored body, with a TTL — written after a FLUSHALL and measured the same way.
 * B. Gateway memory against the number of pending flows: N flows (`--flows`, default 100 000) from a fixed set of
 *    N/100 connected devices (the per-device cap raised to 100), so only the number of flows changes. RSS and V8 heap
 *    after a forced GC with 0, N/2 and N pending; the goal is judged on the slope from N/2 to N (the first half
 *    also pays for what the devices' first requests set up).
 *
 * The gateway is warmed up (and Redis flushed) before each part's zero point.
 */
import type { Redis } from 'ioredis';
import { connectFleet, runRoundTrips } from '../../firmware-sim/fleet.ts';
import type { MemoryInfo, StartedInfo } from '../lib/host.ts';
import { type BenchContext, FLEET_KEY, gatewayEnv, privateRedis, redisInfo } from '../lib/context.ts';
import { sleep } from '../lib/clock.ts';
import { CpuMeter, type CpuReport, type Host, rssBytes, spawnHost } from '../lib/procs.ts';
import type { ScenarioResult } from '../lib/report.ts';

/** devices connected at a time in part A */
const BATCH = 1000;
/** part A's flows (and devices) at most */
const MAX_DEVICES_A = 100_000;
/** flows per device in part B (the largest DEVICEGATE_MAX_FLOWS_PER_DEVICE) */
const FLOWS_PER_DEVICE_B = 100;
const PREFIX = 'devicegate:';

interface Point {
  pending: number;
  rss: number;
  heapUsed: number;
  redisUsedMemory: number;
}

export async function pendingAtScale(ctx: BenchContext): Promise<ScenarioResult> {
  const flowsA = Math.min(ctx.flows, MAX_DEVICES_A);
  const flowsB = ctx.flows;
  const redis = await privateRedis();
  const upstream = await spawnHost('fake-upstream');
  const gateway = await spawnHost('gateway');
  const cpu: Record<string, CpuReport> = {};
  const details: Record<string, unknown> = {};
  const notes: string[] = [];
  const pointsA: Point[] = [];
  const pointsB: Point[] = [];
  try {
    const { issuer } = await upstream.call<StartedInfo>({ op: 'start-fake-upstream', options: {} });
    const started = await gateway.call<StartedInfo>({
      op: 'start-gateway',
      env: gatewayEnv({
        redisUrl: redis.proc.url,
        issuer: issuer!,
        mode: 'authorization_code',
        // long enough that no flow expires during the run; part B needs 100 live flows per device
        extra: {
          DEVICEGATE_CODE_TTL: '1800',
          DEVICEGATE_MAX_FLOWS_PER_DEVICE: String(FLOWS_PER_DEVICE_B),
        },
      }),
    });
    const url = started.mqttUrl!;
    const point = async (into: Point[], pending: number) => {
      const m = await gateway.call<MemoryInfo>({ op: 'memory', gc: true });
      into.push({
        pending,
        rss: rssBytes(gateway.pid),
        heapUsed: m.heapUsed,
        redisUsedMemory: await redisInfo(redis.client, 'memory', 'used_memory'),
      });
    };
    const warmUp = async () => {
      const warm = await connectFleet({ url, fleetKey: FLEET_KEY, devices: 200, idPrefix: 'warm-' });
      await runRoundTrips(warm, { durationMs: ctx.quick ? 2000 : 4000, cancel: true });
      await warm.close();
      await sleep(1500); // the scheduler finishes the cancelled flows' deliveries
      await redis.client.flushall();
    };

    // Part A: one pending flow per device.
    await warmUp();
    await point(pointsA, 0);
    let meter = new CpuMeter({
      devicegate: gateway.pid,
      loadgen: process.pid,
      redis: redis.proc.pid,
    }).start();
    let t0 = performance.now();
    let createdA = 0;
    let errorsA = 0;
    for (let b = 0; b * BATCH < flowsA; b++) {
      const fleet = await connectFleet({
        url,
        fleetKey: FLEET_KEY,
        devices: Math.min(BATCH, flowsA - b * BATCH),
        idPrefix: `tv-${b}-`,
        connectConcurrency: 50,
      });
      try {
        const r = await runRoundTrips(fleet, {
          requestsPerDevice: 1,
          cancel: false,
          requestTimeoutMs: 60_000,
        });
        createdA += r.replies.get('pending') ?? 0;
        errorsA += r.errors;
      } finally {
        await fleet.close();
      }
    }
    cpu.partA = meter.stop();
    await point(pointsA, createdA);
    details.partA = {
      created: createdA,
      errors: errorsA,
      seconds: Math.round((performance.now() - t0) / 100) / 10,
      redis: await breakdown(redis.client, createdA),
      listpackWhatIf: await listpackWhatIf(redis.client, createdA),
      minimal: await minimalStorage(redis.client, createdA),
    };
    if (errorsA > 0)
      notes.push(`part A: ${errorsA} flow starts failed; per-flow figures use the ${createdA} created`);

    // Part B: the same devices, more and more pending flows.
    await warmUp();
    const devicesB = Math.ceil(flowsB / FLOWS_PER_DEVICE_B);
    const fleet = await connectFleet({ url, fleetKey: FLEET_KEY, devices: devicesB, idPrefix: 'tvb-' });
    let createdB = 0;
    let errorsB = 0;
    try {
      await point(pointsB, 0);
      meter = new CpuMeter({ devicegate: gateway.pid, loadgen: process.pid, redis: redis.proc.pid }).start();
      t0 = performance.now();
      for (const half of [FLOWS_PER_DEVICE_B / 2, FLOWS_PER_DEVICE_B / 2]) {
        const r = await runRoundTrips(fleet, {
          requestsPerDevice: half,
          cancel: false,
          requestTimeoutMs: 60_000,
        });
        createdB += r.replies.get('pending') ?? 0;
        errorsB += r.errors;
        await point(pointsB, createdB);
      }
      cpu.partB = meter.stop();
    } finally {
      await fleet.close();
    }
    details.partB = {
      devices: devicesB,
      created: createdB,
      errors: errorsB,
      seconds: Math.round((performance.now() - t0) / 100) / 10,
      redisBytesPerFlow: perFlow(pointsB, 'redisUsedMemory'),
    };
    if (errorsB > 0)
      notes.push(`part B: ${errorsB} flow starts failed; per-flow figures use the ${createdB} created`);
  } finally {
    await stopQuietly(gateway);
    await stopQuietly(upstream);
    await redis.close();
  }

  const a = pointsA[pointsA.length - 1]!;
  const b0 = pointsB[0]!;
  const b = pointsB[pointsB.length - 1]!;
  const redisPerFlow = perFlow(pointsA, 'redisUsedMemory');
  const partA = details.partA as {
    minimal: { bytesPerFlow: number };
    listpackWhatIf: { savedBytesPerFlow: number };
  };
  const minimal = partA.minimal.bytesPerFlow;
  const listpackSaved = partA.listpackWhatIf.savedBytesPerFlow;
  // The slope from N/2 to N: the first half also pays for what the part-B devices' first requests set up.
  const heapPerFlow = perFlow(pointsB.slice(1), 'heapUsed');
  const mib = (bytes: number) => bytes / 2 ** 20;
  const n = (v: number) => v.toLocaleString('en-US');
  return {
    id: 4,
    title: 'pending flows',
    rows: [
      {
        metric: `Redis memory per pending flow (${n(a.pending)} devices, 1 flow each; baseline: 1 string key per flow)`,
        unit: 'B',
        devicegate: redisPerFlow,
        baseline: minimal,
        goal: '≤ 500 B',
        met: redisPerFlow <= 500,
      },
      {
        metric:
          'Redis memory per pending flow with hash-max-listpack-value 512 (operator setting; baseline as above)',
        unit: 'B',
        devicegate: redisPerFlow - listpackSaved,
        baseline: minimal,
        goal: '≤ 500 B',
        met: redisPerFlow - listpackSaved <= 500,
      },
      {
        metric: `gateway heap after GC, ${n(b.pending)} pending on ${n(
          Math.ceil(flowsB / FLOWS_PER_DEVICE_B),
        )} devices (baseline: 0 pending)`,
        unit: 'MiB',
        devicegate: mib(b.heapUsed),
        baseline: mib(b0.heapUsed),
        goal: 'no growth per flow from N/2 to N (< 10 B/flow)',
        met: heapPerFlow < 10,
      },
      {
        metric: `gateway RSS, ${n(b.pending)} pending (baseline: 0 pending)`,
        unit: 'MiB',
        devicegate: mib(b.rss),
        baseline: mib(b0.rss),
      },
    ],
    setup: {
      flows: ctx.flows,
      partA: { devices: flowsA, flowsPerDevice: 1, devicesConnectedAtOnce: BATCH },
      partB: { devices: Math.ceil(flowsB / FLOWS_PER_DEVICE_B), flowsPerDevice: FLOWS_PER_DEVICE_B },
      mode: 'authorization_code (bridge)',
      keyPrefix: PREFIX,
    },
    cpu,
    details: {
      ...details,
      pointsA,
      pointsB,
      redisPerFlow,
      heapPerFlow,
      rssPerFlow: perFlow(pointsB, 'rss'),
      heapPerDeviceSeenA: perFlow(pointsA, 'heapUsed'),
    },
    notes,
  };
}

function perFlow(points: readonly Point[], field: 'rss' | 'heapUsed' | 'redisUsedMemory'): number {
  const first = points[0]!;
  const last = points[points.length - 1]!;
  return (last[field] - first[field]) / Math.max(1, last.pending - first.pending);
}

async function stopQuietly(host: Host): Promise<void> {
  await host.stop().catch(() => undefined);
}

/**
 * The baseline: one string key per flow, named like the flow keys, holding a real flow's stored body, with a TTL.
 */
async function minimalStorage(client: Redis, flows: number): Promise<{ body: number; bytesPerFlow: number }> {
  const [, keys] = await client.scan('0', 'MATCH', `${PREFIX}f:*`, 'COUNT', 1000);
  const body = keys[0] === undefined ? 'x'.repeat(200) : ((await client.hget(keys[0], 'b')) ?? '');
  await client.flushall();
  const before = await redisInfo(client, 'memory', 'used_memory');
  for (let start = 0; start < flows; start += 10_000) {
    const p = client.pipeline();
    for (let i = start; i < Math.min(flows, start + 10_000); i++) {
      // named like the flow keys: device `tv-<batch>-<n>`, rid `<8 hex>.<n>.0`
      const n = i % BATCH;
      p.set(`${PREFIX}f:{tv-${Math.floor(i / BATCH)}-${n}}:0a1b2c3d.${n}.0`, body, 'PX', 1_800_000);
    }
    await p.exec();
  }
  const after = await redisInfo(client, 'memory', 'used_memory');
  await client.flushall();
  return { body: Buffer.byteLength(body), bytesPerFlow: (after - before) / flows };
}

/**
 * What an operator setting would save: with `hash-max-listpack-value` raised to 512 (default 64), a flow hash whose
 * body is longer than 64 bytes is stored as a compact listpack instead of a hashtable. Rewrites every flow hash
 * (same fields, same TTL) under that setting and measures used_memory before and after; the setting is restored.
 */
async function listpackWhatIf(
  client: Redis,
  flows: number,
): Promise<{ setting: string; savedBytesPerFlow: number; encodingAfter: string | null }> {
  await client.config('SET', 'hash-max-listpack-value', '512');
  try {
    const before = await redisInfo(client, 'memory', 'used_memory');
    let cursor = '0';
    let sample: string | undefined;
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${PREFIX}f:*`, 'COUNT', 2000);
      cursor = next;
      if (keys.length === 0) continue;
      sample ??= keys[0];
      const read = client.pipeline();
      for (const key of keys) read.hgetall(key).pttl(key);
      const got = (await read.exec()) ?? [];
      const write = client.pipeline();
      keys.forEach((key, i) => {
        const fields = got[2 * i]?.[1] as Record<string, string> | undefined;
        const ttl = Number(got[2 * i + 1]?.[1]);
        if (fields === undefined || Object.keys(fields).length === 0 || !(ttl > 0)) return;
        write.del(key).hset(key, fields).pexpire(key, ttl);
      });
      await write.exec();
    } while (cursor !== '0');
    const after = await redisInfo(client, 'memory', 'used_memory');
    return {
      setting: 'hash-max-listpack-value 512',
      savedBytesPerFlow: (before - after) / Math.max(1, flows),
      encodingAfter:
        sample === undefined ? null : ((await client.object('ENCODING', sample)) as string | null),
    };
  } finally {
    await client.config('SET', 'hash-max-listpack-value', '64');
  }
}

/** MEMORY USAGE and encodings of one key of each kind, and what the schedule costs per member. */
async function breakdown(client: Redis, flows: number): Promise<Record<string, unknown>> {
  const sample = async (pattern: string) => {
    const [, keys] = await client.scan('0', 'MATCH', pattern, 'COUNT', 1000);
    const key = keys[0];
    if (key === undefined) return undefined;
    const type = await client.type(key);
    return {
      key,
      bytes: Number(await client.memory('USAGE', key, 'SAMPLES', '0')),
      encoding: await client.object('ENCODING', key),
      ...(type === 'hash' && {
        fieldBytes: Object.fromEntries(
          Object.entries(await client.hgetall(key)).map(([k, v]) => [k, Buffer.byteLength(v)]),
        ),
      }),
      ...(type === 'zset' && { members: await client.zcard(key) }),
    };
  };
  const sched = `${PREFIX}sched`;
  const schedBytes = Number(await client.memory('USAGE', sched, 'SAMPLES', '0'));
  const stats = (await client.memory('STATS')) as unknown[];
  const stat = (name: string) => stats[stats.indexOf(name) + 1];
  return {
    keys: await client.dbsize(),
    flowHash: await sample(`${PREFIX}f:*`),
    userCodeKey: await sample(`${PREFIX}uc:*`),
    deviceLiveSet: await sample(`${PREFIX}d:*`),
    schedule: {
      members: await client.zcard(sched),
      bytes: schedBytes,
      bytesPerMember: schedBytes / Math.max(1, flows),
      encoding: await client.object('ENCODING', sched),
    },
    overhead: {
      'keys.bytes-per-key': stat('keys.bytes-per-key'),
      'overhead.total': stat('overhead.total'),
      'dataset.bytes': stat('dataset.bytes'),
      db0: stat('db.0'),
    },
    config: {
      'hash-max-listpack-value': (await client.config('GET', 'hash-max-listpack-value'))[1],
      'zset-max-listpack-entries': (await client.config('GET', 'zset-max-listpack-entries'))[1],
    },
  };
}

/**
 * Scenario 6 — upstream efficiency of relay mode with three gateway instances sharing one Redis. The instances are
 * MQTT clients of a private mosquitto (external broker mode, shared subscription), as a multi-instance deployment
 * runs; devices connect to mosquitto (anonymous: the bench does not configure its ACL). The fake upstream answers
 * with `interval` 1 s; each flow is approved through its admin call at a random time 1–5 s after `pending`.
 *
 * Per completed flow the fake upstream counts every request for it: the device authorization and each token poll.
 * The least possible is `ceil(approval_time / interval) + 1` (polls at every interval until the first one after the
 * approval, plus the device authorization), approval_time counted from the device authorization. A duplicate poll is
 * a token request for a device code sooner than `interval − 50 ms` after the previous one, or after its token was
 * issued: two instances polling one flow would show up as one.
 */
import { connectFleet } from '../../firmware-sim/fleet.ts';
import { startMosquitto } from '../../test/helpers/procs.ts';
import { sleep } from '../lib/clock.ts';
import { type BenchContext, FLEET_KEY, gatewayEnv, privateRedis } from '../lib/context.ts';
import { ReplyTap, admin, send } from '../lib/devices.ts';
import type { StartedInfo } from '../lib/host.ts';
import { CpuMeter, type CpuReport, type Host, spawnHost } from '../lib/procs.ts';
import type { ScenarioResult } from '../lib/report.ts';

const INSTANCES = 3;
const INTERVAL_S = 1;

export async function upstreamEfficiency(ctx: BenchContext): Promise<ScenarioResult> {
  const flows = ctx.quick ? 30 : 90;
  const redis = await privateRedis();
  const mosquitto = await startMosquitto();
  const upstream = await spawnHost('fake-upstream');
  const gateways: Host[] = [];
  const cpu: Record<string, CpuReport> = {};
  const notes: string[] = [];
  let completed = 0;
  let failed = 0;
  const pollsByInstance: number[] = [];
  let report: Awaited<ReturnType<typeof admin.report>>;
  try {
    const { issuer } = await upstream.call<StartedInfo>({
      op: 'start-fake-upstream',
      options: { intervalSeconds: INTERVAL_S },
    });
    for (let i = 0; i < INSTANCES; i++) {
      const host = await spawnHost(`gateway-${i}`);
      gateways.push(host);
      await host.call<StartedInfo>({
        op: 'start-gateway',
        env: gatewayEnv({
          redisUrl: redis.proc.url,
          issuer: issuer!,
          mode: 'device',
          mqttUrl: mosquitto.url,
          extra: { DEVICEGATE_MQTT_CLIENT_ID: `devicegate-bench-${i}` },
        }),
      });
    }
    const fleet = await connectFleet({
      url: mosquitto.url,
      fleetKey: FLEET_KEY,
      devices: flows,
      idPrefix: 'tv-',
    });
    const pids: Record<string, number> = {
      loadgen: process.pid,
      redis: redis.proc.pid,
      mosquitto: mosquitto.pid,
    };
    gateways.forEach((g, i) => (pids[`gateway-${i}`] = g.pid));
    const meter = new CpuMeter(pids).start();
    try {
      await Promise.all(
        fleet.clients.map(async (device, i) => {
          const tap = new ReplyTap(device, fleet);
          const rid = `r${i}`;
          try {
            await sleep((i / flows) * 2000); // starts spread over two seconds
            await send(device, fleet, 'authorize', { rid });
            const pending = await tap.next(rid, 'pending');
            if (pending.reply.status !== 'pending') throw new Error('not pending');
            await sleep(1000 + Math.random() * 4000);
            await admin.approve(issuer!, pending.reply.user_code);
            await tap.next(rid, 'authorized', 20_000);
            await send(device, fleet, 'ack', { rid });
            completed++;
          } catch {
            failed++;
          }
        }),
      );
      // let any poll that would wrongly follow the token arrive
      await sleep(INTERVAL_S * 1000 + 500);
    } finally {
      cpu.run = meter.stop();
      await fleet.close();
    }
    report = await admin.report(issuer!);
    for (const g of gateways) {
      const text = await g.call<string>({ op: 'metrics-text' });
      pollsByInstance.push(
        text
          .split('\n')
          .filter((l) => l.startsWith('devicegate_upstream_polls_total'))
          .reduce((a, l) => a + Number(l.split(' ').pop()), 0),
      );
    }
  } finally {
    await Promise.allSettled(gateways.map((g) => g.stop()));
    await upstream.stop();
    await mosquitto.stop();
    await redis.close();
  }

  let actual = 0;
  let minimum = 0;
  let duplicates = 0;
  let early = 0;
  let afterToken = 0;
  const perFlow: Array<{ requests: number; minimum: number; approvalMs: number }> = [];
  for (const f of report.device) {
    early += f.early;
    afterToken += f.afterToken;
    duplicates += f.early + f.afterToken;
    if (f.tokenSentAt === undefined || f.approvedAt === undefined) continue;
    const approvalMs = f.approvedAt - f.createdAt;
    const requests = 1 + f.polls.length;
    const least = Math.ceil(approvalMs / (INTERVAL_S * 1000)) + 1;
    actual += requests;
    minimum += least;
    perFlow.push({ requests, minimum: least, approvalMs: Math.round(approvalMs) });
  }
  const n = Math.max(1, perFlow.length);
  if (failed > 0) notes.push(`${failed} of ${flows} flows did not complete`);
  return {
    id: 6,
    title: 'upstream efficiency',
    rows: [
      {
        metric: `upstream requests per completed flow, ${INSTANCES} instances (baseline: the minimum)`,
        unit: '',
        devicegate: actual / n,
        baseline: minimum / n,
        goal: 'reported',
      },
      {
        metric: 'duplicate polls (early or after the token)',
        unit: '',
        devicegate: duplicates,
        goal: 'none',
        met: duplicates === 0,
      },
    ],
    setup: {
      instances: INSTANCES,
      flows,
      intervalSeconds: INTERVAL_S,
      approvalDelayMs: '1000–5000 uniform',
      broker: 'mosquitto (external, shared subscription)',
    },
    cpu,
    details: {
      completed,
      failed,
      early,
      afterToken,
      totalRequests: actual,
      totalMinimum: minimum,
      pollsByInstance,
      flowsOverMinimum: perFlow.filter((f) => f.requests > f.minimum).length,
      perFlow,
      upstreamCounts: report.counts,
    },
    notes,
  };
}

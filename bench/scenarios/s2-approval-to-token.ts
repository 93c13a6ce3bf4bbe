/**
 * Scenario 2 — approval to token: how long the gateway takes to hand a device its token once the upstream has
 * answered, and (relay mode) how long after the person's approval the device has it.
 *
 * Bridge: a device starts flows one after another on the real gateway (own process; bridge mode, Redis, embedded
 * broker), so what is measured is the path, not a queue. For each pending flow the gateway process runs
 * `BridgeFlows.approve()` (what the Approve button does) and then `BridgeFlows.callback()` with the code from the
 * fake upstream's `/authorize` redirect — in process, not over HTTP: the browser's hop to `/oauth/callback` is not
 * measured. Measured: from the fake upstream writing the code exchange's token response to the device receiving
 * `authorized`. Baseline: the upstream's own response time — the same code exchange (`POST /token`, Basic auth,
 * undici) issued straight to the fake upstream from the bench process, round trip.
 *
 * Relay: devices start flows on a relay-mode gateway, spread evenly over one interval; the fake upstream answers
 * with `interval` 1 s; each flow is approved through the admin call at a random time 0.5–2.5 s after `pending`.
 * Measured: from the upstream writing the token response to the poll that returns it, to the device receiving
 * `authorized`; and from the approval to the device receiving the token, against the interval.
 *
 * Timestamps from the fake upstream's process are moved onto the bench process's clock with an offset measured by
 * round trips (its uncertainty is reported).
 */
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { connectFleet, summarize, type Fleet } from '../../firmware-sim/fleet.ts';
import { clockOffset, sleep } from '../lib/clock.ts';
import {
  type BenchContext,
  FLEET_KEY,
  UPSTREAM_CLIENT_ID,
  UPSTREAM_CLIENT_SECRET,
  gatewayEnv,
  privateRedis,
} from '../lib/context.ts';
import { ReplyTap, admin, send } from '../lib/devices.ts';
import type { BridgeApproveInfo, StartedInfo } from '../lib/host.ts';
import { CpuMeter, type CpuReport, type Host, spawnHost } from '../lib/procs.ts';
import type { ScenarioResult } from '../lib/report.ts';

const INTERVAL_S = 1;

export async function approvalToToken(ctx: BenchContext): Promise<ScenarioResult> {
  // One flow at a time: the latency of the path itself, not of a queue behind other flows.
  const bridgeDevices = 1;
  const flowsPerDevice = ctx.quick ? 40 : 300;
  const relayDevices = ctx.quick ? 20 : 100;
  const redis = await privateRedis();
  const upstream = await spawnHost('fake-upstream');
  const cpu: Record<string, CpuReport> = {};
  const notes: string[] = [];
  let bridge: { afterUpstream: number[]; callbackMs: number[]; failed: number };
  let relay: { afterUpstream: number[]; approvalToToken: number[]; failed: number };
  let direct: number[];
  let offset: { offsetMs: number; uncertaintyMs: number };
  try {
    const { issuer } = await upstream.call<StartedInfo>({
      op: 'start-fake-upstream',
      options: { intervalSeconds: INTERVAL_S },
    });
    const up = issuer!;
    offset = await clockOffset(() => admin.now(up));
    direct = await directTokenRoundTrips(up, ctx.quick ? 100 : 300);

    /** A gateway process in `mode`, a fleet connected to it, `run` measured with the CPU of every process. */
    const withGateway = async <T>(
      mode: 'authorization_code' | 'device',
      devices: number,
      idPrefix: string,
      run: (fleet: Fleet, host: Host) => Promise<T>,
    ): Promise<T> => {
      const bridgeMode = mode === 'authorization_code';
      const host = await spawnHost(bridgeMode ? 'gateway-bridge' : 'gateway-relay');
      try {
        const started = await host.call<StartedInfo>({
          op: 'start-gateway',
          ...(bridgeMode && { bridge: true }),
          env: gatewayEnv({ redisUrl: redis.proc.url, issuer: up, mode }),
        });
        const fleet = await connectFleet({ url: started.mqttUrl!, fleetKey: FLEET_KEY, devices, idPrefix });
        try {
          const meter = new CpuMeter({
            devicegate: host.pid,
            loadgen: process.pid,
            redis: redis.proc.pid,
          }).start();
          const result = await run(fleet, host);
          cpu[bridgeMode ? 'bridge' : 'relay'] = meter.stop();
          return result;
        } finally {
          await fleet.close();
        }
      } finally {
        await host.stop();
      }
    };

    bridge = await withGateway('authorization_code', bridgeDevices, 'tvb-', (fleet, host) =>
      runBridge(fleet, host, up, flowsPerDevice, offset.offsetMs),
    );
    await redis.client.flushall();
    relay = await withGateway('device', relayDevices, 'tvr-', (fleet) =>
      runRelay(fleet, up, offset.offsetMs),
    );
  } finally {
    await upstream.stop();
    await redis.close();
  }

  if (bridge.failed > 0) notes.push(`bridge: ${bridge.failed} flows did not complete`);
  if (relay.failed > 0) notes.push(`relay: ${relay.failed} flows did not complete`);
  const b = summarize(bridge.afterUpstream);
  const r = summarize(relay.afterUpstream);
  const a = summarize(relay.approvalToToken);
  const d = summarize(direct);
  return {
    id: 2,
    title: 'approval → token',
    rows: [
      {
        metric: `bridge: token response → device, p50 (baseline: upstream round trip)`,
        unit: 'ms',
        devicegate: b.p50,
        baseline: d.p50,
      },
      {
        metric: `bridge: token response → device, p99 (baseline: upstream round trip)`,
        unit: 'ms',
        devicegate: b.p99,
        baseline: d.p99,
        goal: 'p99 < 5 ms',
        met: b.p99 < 5,
      },
      {
        metric: `relay: token response → device, p99 (baseline: upstream round trip)`,
        unit: 'ms',
        devicegate: r.p99,
        baseline: d.p99,
        goal: 'p99 < 5 ms',
        met: r.p99 < 5,
      },
      {
        metric: `relay: approval → device token, p50 (baseline: interval ${INTERVAL_S} s)`,
        unit: 'ms',
        devicegate: a.p50,
        baseline: INTERVAL_S * 1000,
      },
      {
        metric: `relay: approval → device token, p99 (baseline: interval ${INTERVAL_S} s)`,
        unit: 'ms',
        devicegate: a.p99,
        baseline: INTERVAL_S * 1000,
        goal: 'reported',
      },
    ],
    setup: {
      bridge: { devices: bridgeDevices, flowsPerDevice, flows: bridge.afterUpstream.length },
      relay: { devices: relayDevices, intervalSeconds: INTERVAL_S, approvalDelayMs: '500–2500 uniform' },
      clockOffset: offset,
    },
    cpu,
    details: {
      bridge: { afterUpstream: b, callbackMs: summarize(bridge.callbackMs) },
      relay: { afterUpstream: r, approvalToToken: a },
      upstreamRoundTrip: d,
    },
    notes,
  };
}

async function runBridge(
  fleet: Fleet,
  host: Host,
  issuer: string,
  flowsPerDevice: number,
  offsetMs: number,
): Promise<{ afterUpstream: number[]; callbackMs: number[]; failed: number }> {
  const received = new Map<string, number>();
  const callbackMs: number[] = [];
  let failed = 0;
  await Promise.all(
    fleet.clients.map(async (device, i) => {
      const tap = new ReplyTap(device, fleet);
      for (let k = 0; k < flowsPerDevice; k++) {
        const rid = `b${i}.${k}`;
        try {
          await send(device, fleet, 'authorize', { rid });
          const pending = await tap.next(rid, 'pending');
          if (pending.reply.status !== 'pending') throw new Error('not pending');
          const info = await host.call<BridgeApproveInfo>({
            op: 'bridge-approve',
            userCode: pending.reply.user_code,
          });
          if (info.outcome !== 'authorized') throw new Error(`callback: ${info.outcome}`);
          const authorized = await tap.next(rid, 'authorized');
          received.set(info.state, authorized.at);
          callbackMs.push(info.doneAt - info.callbackAt);
          await send(device, fleet, 'ack', { rid });
        } catch {
          failed++;
        }
      }
    }),
  );
  const report = await admin.report(issuer);
  const afterUpstream: number[] = [];
  for (const flow of report.code) {
    const at = received.get(flow.state);
    if (at !== undefined && flow.tokenSentAt !== undefined)
      afterUpstream.push(at - (flow.tokenSentAt - offsetMs));
  }
  return { afterUpstream, callbackMs, failed };
}

async function runRelay(
  fleet: Fleet,
  issuer: string,
  offsetMs: number,
): Promise<{ afterUpstream: number[]; approvalToToken: number[]; failed: number }> {
  const received = new Map<string, number>();
  let failed = 0;
  await Promise.all(
    fleet.clients.map(async (device, i) => {
      const tap = new ReplyTap(device, fleet);
      const rid = `r${i}`;
      try {
        // Starts spread evenly over one interval, so the polls of different flows do not all fall on one instant.
        await sleep((i / fleet.clients.length) * INTERVAL_S * 1000);
        await send(device, fleet, 'authorize', { rid });
        const pending = await tap.next(rid, 'pending');
        if (pending.reply.status !== 'pending') throw new Error('not pending');
        await sleep(500 + Math.random() * 2000);
        await admin.approve(issuer, pending.reply.user_code);
        const authorized = await tap.next(rid, 'authorized', 15_000);
        received.set(pending.reply.user_code, authorized.at);
        await send(device, fleet, 'ack', { rid });
      } catch {
        failed++;
      }
    }),
  );
  const report = await admin.report(issuer);
  const afterUpstream: number[] = [];
  const approvalToToken: number[] = [];
  for (const flow of report.device) {
    const at = received.get(flow.userCode);
    if (at === undefined) continue;
    if (flow.tokenSentAt !== undefined) afterUpstream.push(at - (flow.tokenSentAt - offsetMs));
    if (flow.approvedAt !== undefined) approvalToToken.push(at - (flow.approvedAt - offsetMs));
  }
  return { afterUpstream, approvalToToken, failed };
}

/** The upstream's own response time: authorization code exchanges sent straight to it, timed round trip. */
async function directTokenRoundTrips(issuer: string, n: number): Promise<number[]> {
  const basic = `Basic ${Buffer.from(`${UPSTREAM_CLIENT_ID}:${UPSTREAM_CLIENT_SECRET}`).toString('base64')}`;
  const redirectUri = 'http://127.0.0.1/oauth/callback';
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const state = randomBytes(16).toString('base64url');
    const auth = await request(
      `${issuer}/authorize?response_type=code&client_id=${UPSTREAM_CLIENT_ID}&redirect_uri=${encodeURIComponent(
        redirectUri,
      )}&state=${state}&scope=openid`,
    );
    await auth.body.dump();
    const code = new URL(String(auth.headers.location)).searchParams.get('code')!;
    const body = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: randomBytes(32).toString('base64url'),
    }).toString();
    const t0 = performance.now();
    const res = await request(`${issuer}/token`, {
      method: 'POST',
      headers: {
        authorization: basic,
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body,
    });
    await res.body.json();
    times.push(performance.now() - t0);
  }
  return times.slice(Math.min(20, Math.floor(n / 10))); // the first ones warm up the connection and the JIT
}

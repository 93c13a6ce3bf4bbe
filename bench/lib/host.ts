/**
 * The entry point of every benchmark child process (spawned by ./procs.ts with an IPC channel). One process plays
 * one role, chosen by its first request: a gateway (`startGateway`, the real composition root), the baseline
 * responder (the gateway's own `EmbeddedBroker` answering each request with a fixed message), a bare aedes with no
 * hooks at all, the fake upstream, or a load generator holding a fleet of devices. Later requests measure it: heap
 * after a forced GC, a V8 CPU profile of a window (the profiler `node --cpu-prof` uses, started and stopped on
 * request), counters, and — for the gateway in bridge mode — Approve followed by the upstream callback, in process.
 *
 * Requests are `{id, op, ...}`; answers are `{id, ok: true, result}` or `{id, ok: false, error}`. The process exits
 * when the parent goes away.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { findSourceMap, type SourceMap } from 'node:module';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Session } from 'node:inspector/promises';
import { Aedes } from 'aedes';
import { request } from 'undici';
import { loadConfig } from '../../src/config/index.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';
import { type StartedGateway as Gateway, startGateway } from '../../test/helpers/gateway.ts';
import { createLogger } from '../../src/observability/log.ts';
import type { BridgeFlows } from '../../src/service/bridge.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { EmbeddedBroker } from '../../src/transport/embedded.ts';
import { topics } from '../../src/transport/topics.ts';
import { connectFleet, type Fleet, summarize } from '../../firmware-sim/fleet.ts';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from '../fake-upstream.ts';
import { nowMs } from './clock.ts';
import { type CpuProfile, summarizeProfile } from './profile.ts';

export type HostRequest =
  | { op: 'start-gateway'; env: Record<string, string>; logLevel?: string; bridge?: boolean }
  | { op: 'start-responder'; deviceKey: string; topicPrefix?: string }
  | { op: 'start-bare-aedes' }
  | { op: 'start-fake-upstream'; options: FakeUpstreamOptions }
  | {
      op: 'connect-fleet';
      url: string;
      devices: number;
      idPrefix: string;
      fleetKey: string;
      concurrency: number;
    }
  | { op: 'close-fleet' }
  | { op: 'memory'; gc?: boolean }
  | { op: 'profile-start' }
  | { op: 'profile-stop'; file?: string }
  | { op: 'bridge-approve'; userCode: string }
  | { op: 'bridge-begin'; userCode: string }
  | { op: 'bridge-finish'; callbackUrl: string; state: string }
  | { op: 'metrics-text' }
  | { op: 'stop' };

export interface StartedInfo {
  pid: number;
  mqttUrl?: string;
  httpUrl?: string;
  issuer?: string;
  /** the open-files limit of this process (RLIMIT_NOFILE, soft) */
  maxOpenFiles: number;
}

export interface MemoryInfo {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

export interface FleetInfo {
  connected: number;
  startedAt: number;
  endedAt: number;
  connectRate: number;
  connectP50: number;
  connectP99: number;
}

export interface BridgeApproveInfo {
  outcome: string;
  state: string;
  /** when approve() was called / the callback started / the callback returned ({@link nowMs}) */
  approveAt: number;
  callbackAt: number;
  doneAt: number;
}

/** The pending reply the baseline responder answers with (the gateway's pending reply has the same shape). */
export function fixedReply(rid: string | undefined): DeviceReply {
  return {
    v: 1,
    rid: rid ?? 'unknown',
    status: 'pending',
    user_code: 'BCDF-GHJK',
    verification_uri: 'http://localhost:8080/device',
    verification_uri_complete: 'http://localhost:8080/device?user_code=BCDF-GHJK',
    expires_in: 600,
  };
}

let gateway: Gateway | undefined;
let bridge: BridgeFlows | undefined;
let responder: EmbeddedBroker | undefined;
let bare: { broker: Aedes; server: Server } | undefined;
let upstream: FakeUpstream | undefined;
let fleet: Fleet | undefined;
let session: Session | undefined;

async function handle(req: HostRequest): Promise<unknown> {
  switch (req.op) {
    case 'start-gateway': {
      const config = loadConfig(req.env);
      const log = createLogger(req.logLevel ?? config.logLevel);
      gateway = await startGateway(config, { log });
      if (req.bridge === true) {
        if (gateway.bridge === undefined)
          throw new Error('bridge needs DEVICEGATE_UPSTREAM_MODE=authorization_code');
        bridge = gateway.bridge;
      }
      return info({ mqttUrl: gateway.mqttUrl, httpUrl: gateway.httpUrl });
    }
    case 'start-responder': {
      const t = topics(req.topicPrefix ?? 'devicegate/v1');
      const broker = new EmbeddedBroker({
        host: '127.0.0.1',
        port: 0,
        topics: t,
        deviceAuth: 'hmac',
        deviceKey: req.deviceKey,
        log: createLogger('silent'),
        metrics: new Metrics(),
      });
      // The trivial in-process responder: every request gets a fixed reply carrying its rid.
      await broker.start(async (r) => {
        let rid: string | undefined;
        try {
          rid = (JSON.parse(r.payload.toString('utf8')) as { rid?: string }).rid;
        } catch {
          rid = undefined;
        }
        await broker.publish(r.deviceId, fixedReply(rid));
      });
      responder = broker;
      return info({ mqttUrl: `mqtt://127.0.0.1:${broker.port}` });
    }
    case 'start-bare-aedes': {
      const broker = await Aedes.createBroker();
      const server = createServer({ noDelay: true }, (socket) => broker.handle(socket));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      bare = { broker, server };
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      return info({ mqttUrl: `mqtt://127.0.0.1:${port}` });
    }
    case 'start-fake-upstream':
      upstream = await startFakeUpstream(req.options);
      return info({ issuer: upstream.issuer });
    case 'connect-fleet': {
      const startedAt = nowMs();
      fleet = await connectFleet({
        url: req.url,
        fleetKey: req.fleetKey,
        devices: req.devices,
        idPrefix: req.idPrefix,
        connectConcurrency: req.concurrency,
        connectTimeoutMs: 30_000,
      });
      const endedAt = nowMs();
      const s = summarize(fleet.connectLatencies);
      return {
        connected: fleet.clients.length,
        startedAt,
        endedAt,
        connectRate: fleet.connectRate,
        connectP50: s.p50,
        connectP99: s.p99,
      } satisfies FleetInfo;
    }
    case 'close-fleet':
      await fleet?.close();
      fleet = undefined;
      return {};
    case 'memory':
      if (req.gc === true) collect();
      return memory();
    case 'profile-start':
      session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
      return {};
    case 'profile-stop': {
      if (session === undefined) throw new Error('no profile running');
      const { profile } = (await session.post('Profiler.stop')) as { profile: CpuProfile };
      session.disconnect();
      session = undefined;
      remapToSources(profile);
      if (req.file !== undefined) await writeFile(req.file, JSON.stringify(profile));
      return summarizeProfile(profile);
    }
    case 'bridge-approve':
      return bridgeApprove(req.userCode);
    case 'bridge-begin': {
      // what the Approve button does: the browser is then sent to `redirectUrl` at the upstream
      if (bridge === undefined) throw new Error('the gateway was not started with bridge: true');
      const approved = await bridge.approve(req.userCode, BENCH_SESSION);
      if (approved === undefined) throw new Error('approve() refused the code');
      return { ...approved, state: stateOf(approved.redirectUrl) };
    }
    case 'bridge-finish': {
      // what `/oauth/callback` does with the upstream's redirect
      if (bridge === undefined) throw new Error('the gateway was not started with bridge: true');
      const out = await bridge.callback(new URL(req.callbackUrl).searchParams, BENCH_SESSION);
      return { outcome: out.outcome, doneAt: nowMs() };
    }
    case 'metrics-text':
      return (await gateway?.metrics.render()) ?? '';
    case 'stop':
      await stopAll();
      return {};
  }
}

async function bridgeApprove(userCode: string): Promise<BridgeApproveInfo> {
  if (bridge === undefined) throw new Error('the gateway was not started with bridge: true');
  const approveAt = nowMs();
  const approved = await bridge.approve(userCode, BENCH_SESSION);
  if (approved === undefined) throw new Error('approve() refused the code');
  const state = stateOf(approved.redirectUrl);
  // The browser would follow the redirect to the upstream; the fake upstream answers at once with the callback URL.
  const res = await request(approved.redirectUrl, { method: 'GET' });
  await res.body.dump();
  const location = res.headers.location;
  if (typeof location !== 'string')
    throw new Error(`the upstream answered ${res.statusCode} without a redirect`);
  const callbackAt = nowMs();
  const out = await bridge.callback(new URL(location).searchParams, BENCH_SESSION);
  return { outcome: out.outcome, state, approveAt, callbackAt, doneAt: nowMs() };
}

/** The one browser session every benchmark approval and callback comes from (the state is bound to it). */
const BENCH_SESSION = 'bench-browser-session';

/** The `state` an authorize URL carries. */
function stateOf(authorizeUrl: string): string {
  return new URL(authorizeUrl).searchParams.get('state') ?? '';
}

/**
 * tsx compiles each TypeScript file to one line; put the original line and column (from the inline source maps that
 * tsx registers) into the profile so frames name real source positions.
 */
function remapToSources(profile: CpuProfile): void {
  const maps = new Map<string, SourceMap | undefined>();
  for (const node of profile.nodes) {
    const cf = node.callFrame;
    if (!cf.url.startsWith('file://') || !cf.url.endsWith('.ts')) continue;
    let map = maps.get(cf.url);
    if (!maps.has(cf.url)) {
      map = findSourceMap(cf.url) ?? findSourceMap(fileURLToPath(cf.url));
      maps.set(cf.url, map);
    }
    const entry = map?.findEntry(cf.lineNumber, cf.columnNumber);
    if (entry !== undefined && 'originalLine' in entry) {
      cf.lineNumber = entry.originalLine;
      cf.columnNumber = entry.originalColumn;
    }
  }
}

function info(extra: Partial<StartedInfo>): StartedInfo {
  return { pid: process.pid, maxOpenFiles: maxOpenFiles(), ...extra };
}

function maxOpenFiles(): number {
  try {
    const text = readFileSync('/proc/self/limits', 'utf8');
    const m = /Max open files\s+(\d+)/.exec(text);
    return m === null ? Number.NaN : Number(m[1]);
  } catch {
    return Number.NaN;
  }
}

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('start the host with --expose-gc');
  gc();
  gc();
}

function memory(): MemoryInfo {
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
  };
}

async function stopAll(): Promise<void> {
  await fleet?.close();
  await gateway?.close();
  await responder?.close();
  if (bare !== undefined) {
    const b = bare;
    await new Promise<void>((resolve) => b.broker.close(() => resolve()));
    await new Promise<void>((resolve) => b.server.close(() => resolve()));
  }
  await upstream?.close();
}

process.on('message', (message: { id: number } & HostRequest) => {
  handle(message).then(
    (result) => process.send?.({ id: message.id, ok: true, result }),
    (err: unknown) =>
      process.send?.({
        id: message.id,
        ok: false,
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      }),
  );
});
process.on('disconnect', () => {
  void stopAll().finally(() => process.exit(0));
});
process.send?.({ id: 0, ok: true, result: { pid: process.pid } });

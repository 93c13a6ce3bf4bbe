/**
 * The fuzz target: one gateway process (embedded broker, relay mode against the bench's fake upstream, memory store)
 * and the probes the judge reads: liveness, /healthz, heap in use (prom-client's default metric) and open descriptors
 * from /proc/<pid>/fd.
 */
import { readdirSync } from 'node:fs';
import { type FakeUpstream, startFakeUpstream } from '../../bench/fake-upstream.ts';
import {
  type GatewayProcess,
  startGatewayProcess,
  stopAllGateways,
} from '../../test/helpers/gateway-process.ts';
import { freePort } from '../../test/helpers/procs.ts';

export const FUZZ_KEY = 'fuzz-fleet-key-0123456789abcdef';

export interface FuzzTarget {
  readonly gateway: GatewayProcess;
  readonly upstream: FakeUpstream;
  readonly mqttPort: number;
  /** true while the process runs and `/healthz` answers 200 */
  healthy(): Promise<boolean>;
  /** heap in use, bytes */
  heapUsed(): Promise<number>;
  /** open file descriptors */
  fds(): number;
  close(): Promise<void>;
}

export async function startTarget(): Promise<FuzzTarget> {
  const upstream = await startFakeUpstream({ intervalSeconds: 5 });
  const mqttPort = await freePort();
  const gateway = await startGatewayProcess({
    name: 'fuzz-target',
    env: {
      DEVICEGATE_MQTT_PORT: String(mqttPort),
      DEVICEGATE_UPSTREAM_ISSUER: upstream.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'devicegate-fuzz',
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: 'fuzz-client-secret',
      DEVICEGATE_UPSTREAM_MODE: 'device',
      DEVICEGATE_DEVICE_KEY: FUZZ_KEY,
      // every request reaches the handlers: the rate limit would answer most of them before they are parsed
      DEVICEGATE_DEVICE_RATE: '0',
      DEVICEGATE_LOG_LEVEL: 'fatal',
    },
    timeoutMs: 60_000,
  });
  return {
    gateway,
    upstream,
    mqttPort,
    async healthy() {
      if (gateway.exited) return false;
      const res = await fetch(`${gateway.httpUrl}/healthz`).catch(() => undefined);
      await res?.body?.cancel();
      return res?.status === 200;
    },
    async heapUsed() {
      const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(await gateway.metrics());
      return m === null ? Number.NaN : Number(m[1]);
    },
    fds: () => {
      try {
        return readdirSync(`/proc/${gateway.pid}/fd`).length;
      } catch {
        return Number.NaN;
      }
    },
    async close() {
      await stopAllGateways();
      await upstream.close();
    },
  };
}

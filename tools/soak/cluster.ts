/**
 * The soak's deployment, all real processes started here on free ports: one redis-server with AOF, one Mosquitto
 * with the shipped deploy/mosquitto config (persistence on, in its own directory), N gateway instances in relay mode,
 * and the bench's fake RFC 8628 upstream in this process. The spawning code is the tests' own
 * (test/helpers/procs.ts, test/helpers/gateway-process.ts, test/integration/cluster.ts), so the soak exercises the
 * deployment the integration tests do.
 */
import { type FakeUpstream, startFakeUpstream } from '../../bench/fake-upstream.ts';
import {
  type GatewayProcess,
  startGatewayProcess,
  stopAllGateways,
} from '../../test/helpers/gateway-process.ts';
import { type ManagedProcess, removeDir, startRedis, stopAll } from '../../test/helpers/procs.ts';
import { type Broker, instanceEnv, startBroker } from '../../test/integration/cluster.ts';
import type { Rng } from '../lib/rng.ts';

export const FLEET_KEY = 'soak-fleet-key-0123456789abcdef';
const SECRET = 'soak-secret-0123456789abcdef0123456789';
const START_ATTEMPTS = 5;

export interface ClusterOptions {
  instances: number;
  deviceIds: readonly string[];
  latencyMs: { min: number; max: number };
  leaseMs: number;
  rng: Rng;
}

export interface SoakCluster {
  readonly redis: ManagedProcess;
  readonly broker: Broker;
  readonly upstream: FakeUpstream;
  /** the running process of each instance slot */
  readonly slots: GatewayProcess[];
  /** every gateway process started, restarted ones included (their logs are judged) */
  readonly all: GatewayProcess[];
  /** Starts slot `i` again (after a kill) with the same broker identity; resolves once it answers /healthz. */
  restart(i: number): Promise<void>;
  close(): Promise<void>;
}

export async function startCluster(o: ClusterOptions): Promise<SoakCluster> {
  const users = Array.from({ length: o.instances }, (_, i) => `devicegate-${i + 1}`);
  const [redis, broker, upstream] = await Promise.all([
    startRedis({ appendonly: true }),
    startBroker({ key: FLEET_KEY, devices: o.deviceIds, gateways: users, persistence: true }),
    startFakeUpstream({ intervalSeconds: 1, latencyMs: o.latencyMs, random: o.rng.fork('upstream').next }),
  ]);
  const idp = { issuer: upstream.issuer, clientId: 'devicegate-soak', clientSecret: 'soak-client-secret' };
  const envs = users.map((username) => ({
    ...instanceEnv({
      broker,
      upstream: { idp },
      redisUrl: redis.url,
      key: FLEET_KEY,
      secret: SECRET,
      username,
      leaseMs: o.leaseMs,
    }),
    // every device runs flows back to back: the per-device rate limit is not what is under test
    DEVICEGATE_DEVICE_RATE: '0',
    DEVICEGATE_LOG_LEVEL: 'warn',
  }));
  const slots: GatewayProcess[] = [];
  const all: GatewayProcess[] = [];
  // As a supervisor would, a start that fails (Redis still loading, the broker away, a command timing out on a busy
  // machine) is tried again. Not ready is fine after a restart: Redis or the broker may be what is down right now.
  const startSlot = async (i: number, waitReady: boolean) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const g = await startGatewayProcess({ name: users[i]!, env: envs[i]!, waitReady, timeoutMs: 60_000 });
        slots[i] = g;
        all.push(g);
        return;
      } catch (err) {
        if (attempt === START_ATTEMPTS) throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  };
  // one after another: tsx compiling three copies at once on two cores makes their Redis checks time out
  const close = async () => {
    await stopAllGateways();
    await upstream.close();
    await stopAll();
    await Promise.all([removeDir(redis.dir), removeDir(broker.dir)]);
  };
  try {
    for (let i = 0; i < users.length; i++) await startSlot(i, true);
  } catch (err) {
    await close();
    throw err;
  }
  return {
    redis,
    broker,
    upstream,
    slots,
    all,
    restart: (i) => startSlot(i, false),
    close,
  };
}

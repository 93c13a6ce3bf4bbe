/**
 * What every scenario shares: the run's options, the fleet key and gateway secret used throughout, the environment a
 * benchmark gateway starts with, and a private Redis per scenario (never the machine's shared 6379).
 */
import { Redis } from 'ioredis';
import { type ManagedProcess, removeDir, startRedis } from '../../test/helpers/procs.ts';

export interface BenchOptions {
  /** shorter runs and smaller counts: a smoke run of the whole suite */
  quick: boolean;
  /** pending flows of scenario 4 */
  flows: number;
  /** scenarios to run, in order */
  scenarios: number[];
  /** take a CPU profile of the gateway where a scenario offers one (default true) */
  profile: boolean;
  /** where latest.json and the profiles go */
  resultsDir: string;
}

export interface BenchContext extends BenchOptions {
  log(message: string): void;
}

/** The fleet key every benchmark device derives its password from. */
export const FLEET_KEY = 'bench-fleet-key-0123456789abcdef';
/** The gateway secret (sealing, user-code hashes); the same for every instance of a scenario. */
export const GATEWAY_SECRET = 'bench-gateway-secret-0123456789abcdef-xyz';
export const UPSTREAM_CLIENT_ID = 'devicegate-bench';
export const UPSTREAM_CLIENT_SECRET = 'bench-client-secret';

export interface GatewayEnvOptions {
  redisUrl: string;
  issuer: string;
  mode: 'device' | 'authorization_code';
  /** external broker URL; unset: the embedded broker on a free port */
  mqttUrl?: string;
  /** DEVICEGATE_* overrides */
  extra?: Record<string, string>;
}

/**
 * The environment of a benchmark gateway: production-like (Redis, HMAC device auth, info-level logs) on free
 * loopback ports, against the given upstream.
 */
export function gatewayEnv(o: GatewayEnvOptions): Record<string, string> {
  return {
    DEVICEGATE_HTTP_HOST: '127.0.0.1',
    DEVICEGATE_HTTP_PORT: '0',
    // bridge mode builds its redirect URI from the public URL before the port is bound; benchmarks approve in-process
    DEVICEGATE_PUBLIC_URL: 'http://127.0.0.1',
    DEVICEGATE_MQTT_HOST: '127.0.0.1',
    DEVICEGATE_MQTT_PORT: '0',
    ...(o.mqttUrl !== undefined && { DEVICEGATE_MQTT_URL: o.mqttUrl }),
    DEVICEGATE_REDIS_URL: o.redisUrl,
    DEVICEGATE_UPSTREAM_ISSUER: o.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: UPSTREAM_CLIENT_ID,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: UPSTREAM_CLIENT_SECRET,
    DEVICEGATE_UPSTREAM_MODE: o.mode,
    DEVICEGATE_ALLOW_INSECURE_UPSTREAM: 'true',
    DEVICEGATE_DEVICE_KEY: FLEET_KEY,
    DEVICEGATE_DEVICE_AUTH: 'hmac',
    DEVICEGATE_SECRET: GATEWAY_SECRET,
    DEVICEGATE_LOG_LEVEL: 'info',
    // Benchmark devices send far faster than an honest device (1/s). The per-device limiter still runs on every
    // request (its cost is measured) but at its highest setting it never refuses one.
    DEVICEGATE_DEVICE_RATE: '10000',
    ...o.extra,
  };
}

/** A private redis-server on a free port with a client to it; `close()` stops both. */
export async function privateRedis(): Promise<{
  proc: ManagedProcess;
  client: Redis;
  close(): Promise<void>;
}> {
  const proc = await startRedis();
  const client = new Redis(proc.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  return {
    proc,
    client,
    async close() {
      client.disconnect();
      await proc.stop('SIGKILL');
      await removeDir(proc.dir);
    },
  };
}

/** A number from `INFO <section>`. */
export async function redisInfo(client: Redis, section: string, field: string): Promise<number> {
  const text = await client.info(section);
  const m = new RegExp(`^${field}:(\\S+)`, 'm').exec(text);
  return m === null ? Number.NaN : Number(m[1]);
}

/**
 * What the gateway asks of the Redis server at start (src/gateway/store.ts): a `maxmemory-policy` of `noeviction`
 * (an evicting Redis silently drops flows: refused in production, a warning elsewhere, a note when CONFIG is not
 * allowed), and Redis behind Sentinel (`redis+sentinel://`), found through a real `redis-server --sentinel`.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { buildGateway } from '../../src/gateway/index.ts';
import { createLogger } from '../../src/observability/log.ts';
import { closeAllDevices, connectDevice } from '../helpers/device.ts';
import { type FakeUpstream, startFakeUpstream } from '../helpers/fake-upstream.ts';
import { startRedis, startSentinel, stopAll } from '../helpers/procs.ts';

const KEY = 'redis-server-fleet-key-0123456789';

let upstream: FakeUpstream;

beforeAll(async () => {
  upstream = await startFakeUpstream({ intervalSeconds: 5 });
});

afterAll(async () => {
  await closeAllDevices();
  await upstream?.close();
  await stopAll();
});

/** A relay-mode environment on `redisUrl`; `production` adds what production requires. */
function env(redisUrl: string, production: boolean): Record<string, string> {
  return {
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_REDIS_URL: redisUrl,
    DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: 's'.repeat(40),
    ...(production
      ? {
          NODE_ENV: 'production',
          DEVICEGATE_PUBLIC_URL: 'https://gw.example',
          // never reached: discovery runs in the background and these tests end before it matters
          DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.invalid',
        }
      : { DEVICEGATE_UPSTREAM_ISSUER: upstream.url }),
  };
}

/** A logger whose warnings and errors the test can read. */
function recordingLog() {
  const lines: Array<{ level: number; msg: string; maxmemoryPolicy?: string }> = [];
  return { lines, log: createLogger('warn', { write: (line: string) => lines.push(JSON.parse(line)) }) };
}

describe('maxmemory-policy at start', () => {
  it('an evicting Redis fails the start in production, naming the setting', async () => {
    const redis = await startRedis({ args: ['--maxmemory-policy', 'allkeys-lru'] });
    const { log } = recordingLog();
    const gw = buildGateway(loadConfig(env(redis.url, true)), { log });
    await expect(gw.start()).rejects.toThrow(/maxmemory-policy is allkeys-lru.*noeviction.*production/);
    await gw.close();
  });

  it('outside production the gateway starts and warns', async () => {
    const redis = await startRedis({ args: ['--maxmemory-policy', 'volatile-lru'] });
    const { lines, log } = recordingLog();
    const gw = buildGateway(loadConfig(env(redis.url, false)), { log });
    await gw.start();
    await gw.close();
    expect(lines).toContainEqual(expect.objectContaining({ level: 40, maxmemoryPolicy: 'volatile-lru' }));
  });

  it('noeviction starts without a word; a Redis that refuses CONFIG starts and says the policy was not checked', async () => {
    const good = await startRedis({ args: ['--maxmemory-policy', 'noeviction'] });
    const quiet = recordingLog();
    const gw = buildGateway(loadConfig(env(good.url, true)), { log: quiet.log });
    await gw.start();
    await gw.close();
    expect(quiet.lines.filter((l) => /maxmemory-policy/.test(l.msg))).toEqual([]);

    const managed = await startRedis({ args: ['--rename-command', 'CONFIG', ''] });
    const noted = recordingLog();
    const other = buildGateway(loadConfig(env(managed.url, true)), { log: noted.log });
    await other.start();
    await other.close();
    expect(noted.lines).toContainEqual(
      expect.objectContaining({
        level: 40,
        msg: expect.stringMatching(/could not check the Redis maxmemory-policy/),
      }),
    );
  });
});

describe('Redis Sentinel', () => {
  it('a gateway on a redis+sentinel:// URL finds the master through the sentinel and serves a flow', async () => {
    const master = await startRedis();
    const sentinel = await startSentinel(master, 'flows');
    const gw = buildGateway(loadConfig(env(sentinel.url, false)), { log: createLogger('silent') });
    const at = await gw.start();
    try {
      const tv = await connectDevice({ url: at.mqttUrl, deviceId: 'tv-sentinel', key: KEY });
      const reply = await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' });
      expect(reply.json).toMatchObject({ status: 'pending', user_code: 'BCDF-GH1' });
      expect(await gw.store.get('tv-sentinel', 'r1')).toBeDefined();
      // the flow is on the master the sentinel named, not somewhere else
      const direct = new Redis(master.url);
      try {
        expect(await direct.keys('devicegate:f:{tv-sentinel}:*')).toEqual(['devicegate:f:{tv-sentinel}:r1']);
      } finally {
        direct.disconnect();
      }
    } finally {
      await gw.close();
    }
  });
});

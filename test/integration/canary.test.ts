/**
 * A canary flow (docs/security.md, "Secrets"). Every log line (at trace level), every command Redis executes (MONITOR)
 * and everything stored in Redis is searched for the secrets of a completed flow: the access and refresh tokens,
 * the upstream device code and the user code. None may appear.
 */
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { startDemoIdp, type DemoIdp } from '../../src/demo/idp.ts';
import { type StartedGateway as Gateway, startGateway } from '../helpers/gateway.ts';
import { createLogger } from '../../src/observability/log.ts';
import { closeAllDevices, connectDevice } from '../helpers/device.ts';
import { approveDeviceCode } from '../helpers/idp-person.ts';
import { freePort, startRedis, stopAll, type ManagedProcess } from '../helpers/procs.ts';

const KEY = 'canary-fleet-key-0123456789abcdef';
const PREFIX = 'dg-canary:';
let idp: DemoIdp;
let redis: ManagedProcess;
let gw: Gateway;
let monitor: Redis;
const logLines: string[] = [];
const redisCommands: string[] = [];

beforeAll(async () => {
  redis = await startRedis();
  monitor = new Redis(redis.url);
  const m = await monitor.monitor();
  m.on('monitor', (_time: string, args: string[]) => redisCommands.push(args.join(' ')));
  idp = await startDemoIdp({
    host: '127.0.0.1',
    port: 0,
    redirectUris: [],
    deviceFlow: true,
    log: createLogger('silent'),
  });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: String(await freePort()),
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'device',
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_REDIS_URL: redis.url,
    DEVICEGATE_REDIS_KEY_PREFIX: PREFIX,
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: 'c'.repeat(40),
    DEVICEGATE_LOG_LEVEL: 'trace',
  });
  gw = await startGateway(config, { log: createLogger('trace', sink) });
});

afterAll(async () => {
  await closeAllDevices();
  await gw?.close();
  await idp?.close();
  monitor?.disconnect();
  await stopAll();
});

describe('canary flow', () => {
  it('no token, device code or user code in logs, in Redis commands or in stored values', async () => {
    const tv = await connectDevice({ url: gw.mqttUrl, deviceId: 'tv-canary', key: KEY });
    const pending = (
      await tv.ask('authorize', { rid: 'c1', scope: 'openid offline_access' }, { status: 'pending' })
    ).json!;
    const userCode = String(pending.user_code);
    const stored = (await gw.store.get('tv-canary', 'c1'))!.flow;
    if (stored.mode !== 'device') throw new Error('a relay gateway stores relay flows');
    const deviceCode = stored.secrets.deviceCode!;
    await approveDeviceCode(String(pending.verification_uri), userCode);
    const done = (await tv.waitForReply({ rid: 'c1', status: 'authorized' }, { timeoutMs: 10_000 })).json!;
    const accessToken = String(done.access_token);
    // refresh tokens are never sent to the device and never kept
    expect(done.refresh_token).toBeUndefined();
    await tv.ask('status', { rid: 'c1' }, { status: 'authorized' });
    await tv.request('ack', { rid: 'c1' });

    const dump: string[] = [];
    const client = new Redis(redis.url);
    try {
      for (const key of await client.keys(`${PREFIX}*`)) {
        const type = await client.type(key);
        if (type === 'hash') dump.push(JSON.stringify(await client.hgetall(key)));
        else if (type === 'string') dump.push((await client.get(key)) ?? '');
        else if (type === 'zset') dump.push((await client.zrange(key, '0', '-1')).join(' '));
      }
    } finally {
      client.disconnect();
    }

    expect(logLines.length).toBeGreaterThan(5);
    expect(redisCommands.length).toBeGreaterThan(5);
    const haystacks = {
      logs: logLines.join('\n'),
      redisCommands: redisCommands.join('\n'),
      redisDump: dump.join('\n'),
    };
    const needles = {
      accessToken,
      deviceCode,
      userCode,
      userCodeCompact: userCode.replace('-', ''),
      clientSecret: idp.clientSecret,
    };
    for (const [where, text] of Object.entries(haystacks)) {
      for (const [what, secret] of Object.entries(needles)) {
        const at = text.indexOf(secret);
        expect(at < 0, `${what} found in ${where}: ${text.slice(Math.max(0, at - 200), at + 50)}`).toBe(true);
      }
    }
  });
});

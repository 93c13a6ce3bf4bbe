/**
 * Brokers with and without shared subscriptions (docs/brokers.md). nats-server 2.9 (MQTT + JetStream), RabbitMQ 3.10
 * with `rabbitmq_mqtt` and a standalone aedes grant `$share/{group}/{prefix}/+/req/+` and never deliver through it;
 * Mosquitto does. Each broker is real and private to this file (free loopback ports, stopped by PID). For each: with
 * shared subscriptions on, the delivery self-check tells (`/readyz` 503 naming the setting, or ready on Mosquitto);
 * with `DEVICEGATE_MQTT_SHARED_SUBSCRIPTION=false` a device's authorize is answered end to end. The check runs again
 * after every reconnect. On Redis, a second
 * instance that would share a plain subscription refuses to start.
 */
import { type AddressInfo, createServer } from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/observability/log.ts';
import { closeAllDevices, connectDevice } from '../helpers/device.ts';
import { type StartedGateway, startGateway } from '../helpers/gateway.ts';
import {
  type ManagedProcess,
  startMosquitto,
  startNats,
  startRabbitMq,
  startRedis,
  stopAll,
  waitFor,
} from '../helpers/procs.ts';
import { PREFIX, type Upstream, startUpstream } from './cluster.ts';

const KEY = 'brokers-test-fleet-key';
const FIX = 'DEVICEGATE_MQTT_SHARED_SUBSCRIPTION=false';

interface RunningBroker {
  url: string;
  stop(): Promise<void>;
}

/** A standalone aedes (not the gateway's embedded one) on a free loopback port, in this process. */
async function startAedes(listenPort = 0): Promise<RunningBroker> {
  const broker = await Aedes.createBroker();
  const server = createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    async stop() {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const managedBroker = (p: ManagedProcess): RunningBroker => ({ url: p.url, stop: () => p.stop() });

let upstream: Upstream;
const gateways: StartedGateway[] = [];

interface Started {
  gw: StartedGateway;
  lines: Array<{ msg?: string; level?: number }>;
}

async function gateway(url: string, extra: Record<string, string> = {}): Promise<Started> {
  const lines: Started['lines'] = [];
  const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_URL: url,
    DEVICEGATE_MQTT_CLIENT_ID: 'devicegate-1',
    DEVICEGATE_UPSTREAM_ISSUER: upstream.idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: upstream.idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: upstream.idp.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'device',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: 's'.repeat(40),
    ...extra,
  });
  const gw = await startGateway(config, { log });
  gateways.push(gw);
  return { gw, lines };
}

async function readyz(
  gw: StartedGateway,
): Promise<{ status: number; broker: { ok: boolean; detail: string } }> {
  const res = await fetch(`${gw.httpUrl}/readyz`);
  const body = (await res.json()) as { checks: { broker: { ok: boolean; detail: string } } };
  return { status: res.status, broker: body.checks.broker };
}

/** A device's authorize on the broker, answered with a pending reply (RFC 8628 user code and link). */
async function authorizeIsAnswered(url: string, deviceId: string, anonymous: boolean): Promise<void> {
  const tv = await connectDevice({
    url,
    deviceId,
    key: KEY,
    ...(anonymous && { username: null, password: null }),
  });
  const r = await tv.ask('authorize', { rid: 'r1' }, { status: 'pending', timeoutMs: 10_000 });
  expect(r.json?.['user_code']).toEqual(expect.any(String));
}

beforeAll(async () => {
  upstream = await startUpstream();
});

afterEach(async () => {
  await closeAllDevices();
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

afterAll(async () => {
  await upstream?.close();
  await stopAll();
});

const withoutShared: Array<{ name: string; start: () => Promise<RunningBroker>; anonymous: boolean }> = [
  { name: 'standalone aedes', start: startAedes, anonymous: false },
  { name: 'nats-server 2.9', start: async () => managedBroker(await startNats()), anonymous: false },
  // RabbitMQ checks any credentials it is given; its test node allows anonymous MQTT instead
  { name: 'RabbitMQ 3.10', start: async () => managedBroker(await startRabbitMq()), anonymous: true },
];

describe.each(withoutShared)('$name (no shared subscriptions)', ({ start, anonymous }) => {
  let broker: RunningBroker;
  beforeAll(async () => {
    broker = await start();
  }, 60_000);
  afterAll(async () => {
    await broker?.stop();
  });

  it('shared subscription on: the delivery self-check fails, /readyz answers 503 and names the setting', async () => {
    const { gw, lines } = await gateway(broker.url);
    const r = await readyz(gw);
    expect(r.status).toBe(503);
    expect(r.broker.ok).toBe(false);
    expect(r.broker.detail).toContain('delivery self-check failed');
    expect(r.broker.detail).toContain(FIX);
    const logged = lines.find((l) => l.msg?.startsWith('delivery self-check failed'));
    expect(logged?.msg).toContain(FIX);
    expect(logged?.level).toBe(50);
  }, 20_000);

  it(`${FIX}: the self-check passes and a device's authorize is answered end to end`, async () => {
    const { gw, lines } = await gateway(broker.url, { DEVICEGATE_MQTT_SHARED_SUBSCRIPTION: 'false' });
    expect((await readyz(gw)).status).toBe(200);
    expect(lines.some((l) => l.msg === 'delivery self-check passed')).toBe(true);
    await authorizeIsAnswered(broker.url, 'tv-plain', anonymous);
  }, 20_000);
});

describe('Mosquitto (shared subscriptions work)', () => {
  let broker: ManagedProcess;
  beforeAll(async () => {
    broker = await startMosquitto();
  });

  it('shared subscription on: the self-check passes, the canary is never handled as a device request', async () => {
    const watcher = await mqtt.connectAsync(broker.url, { clientId: 'watcher' });
    const replies: string[] = [];
    watcher.on('message', (topic) => replies.push(topic));
    await watcher.subscribeAsync(`${PREFIX}/+/res`, { qos: 1 });
    const { gw, lines } = await gateway(broker.url, { DEVICEGATE_MQTT_USERNAME: 'devicegate-1' });
    expect((await readyz(gw)).status).toBe(200);
    const passed = lines.find((l) => l.msg === 'delivery self-check passed') as
      { canary?: string } | undefined;
    expect(passed?.canary).toBe(`${PREFIX}/devicegate-1/req/selfcheck`);
    await authorizeIsAnswered(broker.url, 'tv-shared', false);
    // the device's reply, and no reply to the canary's "device" (which was published before it)
    await waitFor(() => replies.length > 0, 5000, "the device's reply");
    expect(replies).toEqual([`${PREFIX}/tv-shared/res`]);
    await watcher.endAsync();
  }, 20_000);

  it(`${FIX}: a device's authorize is answered end to end`, async () => {
    const { gw } = await gateway(broker.url, { DEVICEGATE_MQTT_SHARED_SUBSCRIPTION: 'false' });
    expect((await readyz(gw)).status).toBe(200);
    await authorizeIsAnswered(broker.url, 'tv-plain-m', false);
  }, 20_000);
});

it("a broker whose ACL keeps the canary from the gateway's user: /readyz 503, and the log points at the ACL", async () => {
  const strict = await startMosquitto({
    files: { acl: 'user devicegate-9\ntopic read devicegate/v1/+/req/+\ntopic write devicegate/v1/+/res\n' },
    // as root Mosquitto drops to the `mosquitto` user, which cannot read the mode-600 ACL file
    config: [
      'allow_anonymous true',
      'acl_file {dir}/acl',
      ...(process.getuid?.() === 0 ? ['user root'] : []),
    ],
  });
  const { gw, lines } = await gateway(strict.url, {
    DEVICEGATE_MQTT_USERNAME: 'devicegate-9',
    DEVICEGATE_MQTT_SHARED_SUBSCRIPTION: 'false',
  });
  const r = await readyz(gw);
  expect(r.status).toBe(503);
  expect(r.broker.detail).toContain(
    `Check the broker's ACL: let the gateway's broker user publish to ${PREFIX}/devicegate-9/req/selfcheck`,
  );
  expect(lines.some((l) => l.msg?.startsWith('delivery self-check failed'))).toBe(true);
}, 20_000);

it('the self-check runs again after every reconnect: a broker replaced by one that drops $share turns /readyz to 503', async () => {
  const mosquitto = await startMosquitto();
  const { gw, lines } = await gateway(mosquitto.url);
  expect((await readyz(gw)).status).toBe(200);
  await mosquitto.stop();
  const aedes = await startAedes(mosquitto.port);
  try {
    await waitFor(
      () => lines.some((l) => l.msg?.startsWith('delivery self-check failed')),
      15_000,
      'the failed self-check after the reconnect',
    );
    const r = await readyz(gw);
    expect(r.status).toBe(503);
    expect(r.broker.detail).toContain(FIX);
  } finally {
    await gw.close();
    await aedes.stop();
  }
}, 25_000);

describe('instances on one Redis', () => {
  let broker: RunningBroker;
  let redisUrl: string;
  beforeAll(async () => {
    broker = await startAedes();
    redisUrl = (await startRedis()).url;
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('a second instance that would share a plain subscription refuses to start, naming the setting', async () => {
    const plain = { DEVICEGATE_REDIS_URL: redisUrl, DEVICEGATE_MQTT_SHARED_SUBSCRIPTION: 'false' };
    const first = await gateway(broker.url, plain);
    await expect(
      gateway(broker.url, { ...plain, DEVICEGATE_MQTT_CLIENT_ID: 'devicegate-2' }),
    ).rejects.toThrow(FIX);
    // a shared instance would also receive what the plain one receives
    await expect(
      gateway(broker.url, { DEVICEGATE_REDIS_URL: redisUrl, DEVICEGATE_MQTT_CLIENT_ID: 'devicegate-3' }),
    ).rejects.toThrow(FIX);
    // the first keeps serving; once it is gone, its registration goes with it and another may start
    expect((await readyz(first.gw)).status).toBe(200);
    await first.gw.close();
    const next = await gateway(broker.url, { ...plain, DEVICEGATE_MQTT_CLIENT_ID: 'devicegate-4' });
    expect((await readyz(next.gw)).status).toBe(200);
  }, 30_000);
});

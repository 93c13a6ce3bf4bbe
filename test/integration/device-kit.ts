/**
 * The example devices (examples/c, examples/python) share one command line and one suite, run by
 * c-device.test.ts and python-device.test.ts. They run against the demo IdP with the device flow (relay mode, 1 s
 * polls) behind two gateways — one with the embedded broker, one behind a private Mosquitto configured from
 * deploy/mosquitto whose devices connect over TLS (a second listener, as in docker-compose.yml) — and the person
 * approves through the IdP's pages. Devices get their password as provisioning hands it out (`devicegate
 * credentials`), never the fleet key. Not a test file: the suites import it.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connectAsync } from 'mqtt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { credentialsCommand } from '../../src/cli/credentials.ts';
import { loadConfig } from '../../src/config/index.ts';
import { type DemoIdp, startDemoIdp } from '../../src/demo/idp.ts';
import { createLogger } from '../../src/observability/log.ts';
import { makeTestCerts } from '../helpers/certs.ts';
import { type ExampleDevice, runExampleDevice, shownCode } from '../helpers/example-device.ts';
import { type StartedGateway, startGateway } from '../helpers/gateway.ts';
import { approveDeviceCode } from '../helpers/idp-person.ts';
import { stopAll, waitFor } from '../helpers/procs.ts';
import { GATEWAY_PASSWORD, startBroker } from './cluster.ts';
import { userinfo } from './relay-scenarios.ts';

export interface DeviceKit {
  idp: DemoIdp;
  /** the gateway with its embedded broker */
  embedded: StartedGateway;
  /** the gateway behind Mosquitto; devices reach Mosquitto with TLS on `tlsPort`, verified with `caFile` */
  external: StartedGateway;
  tlsPort: number;
  caFile: string;
  /** a temporary directory for the devices' files */
  dir: string;
  close(): Promise<void>;
}

const log = createLogger('silent');

function relayEnv(idp: DemoIdp, key: string): Record<string, string> {
  return {
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'device',
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_DEVICE_KEY: key,
    DEVICEGATE_LOG_LEVEL: 'silent',
  };
}

/** Starts the kit; `tlsDevices` get a line in Mosquitto's password file. */
export async function startDeviceKit(key: string, tlsDevices: readonly string[]): Promise<DeviceKit> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-kit-'));
  const certs = await makeTestCerts(dir);
  const idp = await startDemoIdp({ host: '127.0.0.1', port: 0, redirectUris: [], deviceFlow: true, log });
  const embedded = await startGateway(loadConfig({ ...relayEnv(idp, key), DEVICEGATE_MQTT_PORT: '0' }), {
    log,
  });
  const broker = await startBroker({ key, devices: tlsDevices, gateways: ['devicegate-1'], tls: certs });
  const external = await startGateway(
    loadConfig({
      ...relayEnv(idp, key),
      DEVICEGATE_MQTT_URL: broker.url,
      DEVICEGATE_MQTT_USERNAME: 'devicegate-1',
      DEVICEGATE_MQTT_PASSWORD: GATEWAY_PASSWORD,
      DEVICEGATE_MQTT_CLIENT_ID: 'devicegate-1',
    }),
    { log },
  );
  const close = async () => {
    await Promise.allSettled([embedded.close(), external.close()]);
    await idp.close();
    await stopAll();
    await rm(dir, { recursive: true, force: true });
  };
  return { idp, embedded, external, tlsPort: broker.tlsPort!, caFile: certs.ca, dir, close };
}

/** A device's password as provisioning hands it out: `devicegate credentials <id>`. */
export function provisionedPassword(key: string, deviceId: string): string {
  const { out } = credentialsCommand([deviceId], { DEVICEGATE_DEVICE_KEY: key });
  const password = /\tpassword=(\S+)$/m.exec(out)?.[1];
  if (password === undefined) throw new Error(`no password in: ${out}`);
  return password;
}

/** How many requests of `action` a gateway has taken. */
export function requests(gw: StartedGateway, action: string): Promise<number> {
  return gw.metrics.value('devicegate_device_requests_total', { action });
}

/** The suite every example device passes. `prepare` builds it if need be and returns its command line so far. */
export function exampleDeviceSuite(name: string, prepare: (dir: string) => Promise<string[]>): void {
  const KEY = `${name}-device-test-fleet-key`;
  let kit: DeviceKit;
  let command: string[];

  beforeAll(async () => {
    kit = await startDeviceKit(KEY, [`tv-${name}-tls`]);
    command = await prepare(kit.dir);
  });
  afterAll(async () => {
    await kit?.close();
  });

  const file = (n: string) => path.join(kit.dir, n);
  function run(deviceId: string, at: string[], extra: string[] = [], password?: string): ExampleDevice {
    const [cmd = '', ...pre] = command;
    const files = ['--state-file', file(`${deviceId}.state`), '--token-file', file(`${deviceId}.json`)];
    return runExampleDevice(
      cmd,
      [...pre, '--device-id', deviceId, '--timeout', '30', ...at, ...files, ...extra],
      {
        DEVICEGATE_DEVICE_PASSWORD: password ?? provisionedPassword(KEY, deviceId),
      },
    );
  }
  const embeddedBroker = () => ['--host', '127.0.0.1', '--port', new URL(kit.embedded.mqttUrl).port];

  /** The stored reply: a token valid at the IdP, in a file only its owner reads, never printed; the rid forgotten. */
  async function expectToken(device: ExampleDevice, deviceId: string): Promise<void> {
    const reply = JSON.parse(await readFile(file(`${deviceId}.json`), 'utf8')) as Record<string, unknown>;
    expect(reply).toMatchObject({ status: 'authorized', access_token: expect.any(String) });
    expect((await stat(file(`${deviceId}.json`))).mode & 0o777).toBe(0o600);
    expect((await userinfo(kit.idp, String(reply.access_token))).status).toBe(200);
    expect(device.out()).not.toContain(String(reply.access_token));
    await expect(stat(file(`${deviceId}.state`))).rejects.toThrow(/ENOENT/);
  }

  it('shows the code, is restarted, resumes with req/status, receives the token after approval and acks', async () => {
    const id = `tv-${name}`;
    const first = run(id, embeddedBroker(), ['--scope', 'openid profile']);
    const shown = await waitFor(() => shownCode(first.out()), 15_000, 'the user code on stdout');
    const rid = (await readFile(file(`${id}.state`), 'utf8')).trim();
    expect(rid).toMatch(/^[0-9a-f]{32}$/);
    first.child.kill('SIGKILL');
    await first.exit;
    expect(await requests(kit.embedded, 'status')).toBe(0);

    const second = run(id, embeddedBroker());
    try {
      // the restarted device asks about the same request and shows the same code again
      await waitFor(() => shownCode(second.out()), 15_000, 'the user code after the restart');
      expect(second.out()).toContain(`resuming request ${rid}`);
      expect(shownCode(second.out())?.userCode).toBe(shown.userCode);
      await approveDeviceCode(shown.uri, shown.userCode);
      expect(await second.exit).toBe(0);
    } finally {
      second.child.kill();
    }
    expect(await requests(kit.embedded, 'status')).toBe(1);
    expect(await requests(kit.embedded, 'authorize')).toBe(1);
    await waitFor(async () => (await requests(kit.embedded, 'ack')) === 1, 5000, 'the ack');
    await expectToken(second, id);
  });

  it('after slow_down waits retry_after and asks again', async () => {
    const id = `tv-${name}-busy`;
    // the device already has its DEVICEGATE_MAX_FLOWS_PER_DEVICE (3) unfinished requests, from an earlier life
    const earlier = await pendingFlows(kit, id, provisionedPassword(KEY, id), 3);
    const device = run(id, embeddedBroker());
    try {
      await waitFor(() => /^slow_down: asking again in \d+ s$/m.test(device.out()), 15_000, 'slow_down');
      expect(shownCode(device.out())).toBeUndefined();
      // one of the earlier requests ends (the person denies it): the device's next attempt gets its code
      await approveDeviceCode(earlier[0]!.uri, earlier[0]!.userCode, { deny: true });
      await waitFor(() => shownCode(device.out()), 20_000, 'the user code after slow_down');
    } finally {
      device.child.kill();
    }
  });

  it('resuming a request the gateway has forgotten (expired_token) starts a new one', async () => {
    const id = `tv-${name}-late`;
    const forgotten = 'f'.repeat(32);
    await writeFile(file(`${id}.state`), forgotten);
    const device = run(id, embeddedBroker());
    try {
      await waitFor(() => shownCode(device.out()), 15_000, 'the user code of a new request');
      expect(device.out()).toContain(`request ${forgotten} is gone`);
      const rid = (await readFile(file(`${id}.state`), 'utf8')).trim();
      expect(rid).toMatch(/^[0-9a-f]{32}$/);
      expect(rid).not.toBe(forgotten);
    } finally {
      device.child.kill();
    }
  });

  it('a wrong password is refused at CONNECT: exit 1', async () => {
    const device = run(`tv-${name}-bad`, embeddedBroker(), [], provisionedPassword(KEY, 'someone-else'));
    expect(await device.exit).toBe(1);
    expect(device.out()).toMatch(/connection refused/);
  });

  it('over TLS (--cafile) through Mosquitto with the deploy/mosquitto ACL: authorized and acked', async () => {
    const id = `tv-${name}-tls`;
    const device = run(id, ['--host', 'localhost', '--port', String(kit.tlsPort), '--cafile', kit.caFile]);
    try {
      const shown = await waitFor(() => shownCode(device.out()), 15_000, 'the user code on stdout');
      await approveDeviceCode(shown.uri, shown.userCode);
      expect(await device.exit).toBe(0);
    } finally {
      device.child.kill();
    }
    await waitFor(async () => (await requests(kit.external, 'ack')) === 1, 5000, 'the ack');
    await expectToken(device, id);
  });
}

/** Starts `count` flows as device `id` from a short-lived mqtt.js connection; their user codes and links. */
async function pendingFlows(
  kit: DeviceKit,
  id: string,
  password: string,
  count: number,
): Promise<Array<{ userCode: string; uri: string }>> {
  const client = await connectAsync(kit.embedded.mqttUrl, {
    ...{ clientId: id, username: id, password, protocolVersion: 4 },
    reconnectPeriod: 0,
  });
  const codes: Array<{ userCode: string; uri: string }> = [];
  client.on('message', (_topic, payload) => {
    const reply = JSON.parse(payload.toString()) as Record<string, string>;
    if (reply.status === 'pending')
      codes.push({ userCode: reply.user_code!, uri: reply.verification_uri_complete! });
  });
  try {
    await client.subscribeAsync(`devicegate/v1/${id}/res`, { qos: 1 });
    for (let i = 0; i < count; i++) {
      await client.publishAsync(
        `devicegate/v1/${id}/req/authorize`,
        JSON.stringify({ rid: `earlier-${i}` }),
        {
          qos: 1,
        },
      );
    }
    await waitFor(() => codes.length === count, 10_000, `${count} pending replies`);
  } finally {
    await client.endAsync();
  }
  return codes;
}

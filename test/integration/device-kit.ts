/**
 * The example devices (examples/c, examples/python) share one command line and one suite, run by
 * c-device.test.ts and python-device.test.ts. They run against the demo IdP with the device flow (relay mode, 1 s
 * polls) behind two gateways — one with the embedded broker, one behind a private Mosquitto configured from
 * deploy/mosquitto whose devices connect over TLS (a second listener, as in docker-compose.yml) — and the person
 * approves through the IdP's pages. Devices get their password as provisioning hands it out (`devicegate
 * credentials`), never the fleet key. Not a test file: the suites import it.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
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

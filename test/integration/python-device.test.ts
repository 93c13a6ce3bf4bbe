/**
 * A device nobody on this project wrote the client library of: examples/python/devicegate_device.py on paho-mqtt
 * (Debian's python3-paho-mqtt, run with the system Python), against the gateway in relay mode (embedded broker)
 * with the demo IdP upstream; the person approves through the IdP's pages.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { type DemoIdp, startDemoIdp } from '../../src/demo/idp.ts';
import { createLogger } from '../../src/observability/log.ts';
import { type StartedGateway, startGateway } from '../helpers/gateway.ts';
import { approveDeviceCode } from '../helpers/idp-person.ts';
import { waitFor } from '../helpers/procs.ts';
import { userinfo } from './relay-scenarios.ts';

const SCRIPT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../examples/python/devicegate_device.py',
);
/** Debian's python3-paho-mqtt is installed for the system interpreter, whatever else is first on PATH. */
const PYTHON = '/usr/bin/python3';
const KEY = 'python-device-test-fleet-key';
const log = createLogger('silent');

let idp: DemoIdp;
let gw: StartedGateway;
let dir: string;

beforeAll(async () => {
  idp = await startDemoIdp({ host: '127.0.0.1', port: 0, redirectUris: [], deviceFlow: true, log });
  gw = await startGateway(
    loadConfig({
      DEVICEGATE_HTTP_PORT: '0',
      DEVICEGATE_MQTT_PORT: '0',
      DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
      DEVICEGATE_UPSTREAM_MODE: 'device',
      DEVICEGATE_POLL_INTERVAL: '1',
      DEVICEGATE_DEVICE_KEY: KEY,
      DEVICEGATE_LOG_LEVEL: 'silent',
    }),
    { log },
  );
  dir = await mkdtemp(path.join(tmpdir(), 'dg-paho-'));
});

afterAll(async () => {
  await gw?.close();
  await idp?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** The script as a child process; its stdout so far, and its exit code once it has exited. */
function runDevice(args: string[]): { child: ChildProcess; out: () => string; exit: Promise<number | null> } {
  const child = spawn(PYTHON, [SCRIPT, ...args], {
    env: { PATH: process.env.PATH ?? '', DEVICEGATE_DEVICE_KEY: KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, exit };
}

describe('a Python paho-mqtt device (examples/python)', () => {
  it('connects with the HMAC password, shows the user code, receives the token after approval, acks, exits 0', async () => {
    const url = new URL(gw.mqttUrl);
    const tokenFile = path.join(dir, 'token.json');
    const device = runDevice([
      ...['--host', '127.0.0.1', '--port', url.port, '--device-id', 'tv-paho'],
      ...['--scope', 'openid profile', '--token-file', tokenFile, '--timeout', '30'],
    ]);
    try {
      const shown = await waitFor(
        () => /^user_code: (\S+)$[\s\S]*^verification_uri_complete: (\S+)$/m.exec(device.out()) ?? undefined,
        15_000,
        'the user code on stdout',
      );
      await approveDeviceCode(shown[2]!, shown[1]!);
      expect(await device.exit).toBe(0);
    } finally {
      device.child.kill();
    }
    const token = JSON.parse(await readFile(tokenFile, 'utf8')) as Record<string, unknown>;
    expect(token).toMatchObject({ access_token: expect.any(String), token_type: expect.any(String) });
    expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
    expect((await userinfo(idp, String(token.access_token))).status).toBe(200);
    // the token is stored, never printed
    expect(device.out()).toContain('authorized: token_type=');
    expect(device.out()).not.toContain(String(token.access_token));
    // the ack reached the gateway: the flow is finished and acknowledged
    await waitFor(
      async () => (await gw.metrics.value('devicegate_device_requests_total', { action: 'ack' })) === 1,
      5000,
      'the ack',
    );
  });

  it('a wrong fleet key is refused at CONNECT: exit 1', async () => {
    const url = new URL(gw.mqttUrl);
    const device = runDevice([
      ...['--host', '127.0.0.1', '--port', url.port, '--device-id', 'tv-paho-bad', '--key', 'not-the-key'],
      ...['--token-file', path.join(dir, 'bad.json'), '--timeout', '10'],
    ]);
    expect(await device.exit).toBe(1);
    expect(device.out()).toMatch(/connection refused/);
  });
});

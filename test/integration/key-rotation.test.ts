/**
 * Fleet-key rotation on the embedded broker, with mqtt.js devices: a password derived from the previous key is
 * accepted only while `DEVICEGATE_DEVICE_KEY_PREVIOUS` names it, and each such connect is logged and counted so the
 * operator can tell when no device uses the old key any more.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { closeAllDevices, connectDevice, connectRefused } from '../helpers/device.ts';
import { type StartedGateway as Gateway, startGateway } from '../helpers/gateway.ts';
import { capturingLogger } from '../helpers/log.ts';

const OLD = 'old-fleet-key-0123456789abcdef';
const NEW = 'new-fleet-key-0123456789abcdef';
const gateways: Gateway[] = [];

async function gateway(extra: Record<string, string>, lines: string[] = []): Promise<Gateway> {
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_PORT: '0',
    // never reached: the broker is under test, not the flows
    DEVICEGATE_UPSTREAM_ISSUER: 'http://127.0.0.1:9',
    DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    DEVICEGATE_DEVICE_KEY: NEW,
    ...extra,
  });
  const g = await startGateway(config, { log: capturingLogger(lines, 'info') });
  gateways.push(g);
  return g;
}

afterEach(closeAllDevices);

afterAll(async () => {
  await Promise.allSettled(gateways.map((g) => g.close()));
});

describe('fleet-key rotation', () => {
  it('a password from the previous key is accepted while DEVICEGATE_DEVICE_KEY_PREVIOUS is set, and counted', async () => {
    const lines: string[] = [];
    const g = await gateway({ DEVICEGATE_DEVICE_KEY_PREVIOUS: OLD }, lines);
    await connectDevice({ url: g.mqttUrl, deviceId: 'tv-old', key: OLD });
    await connectDevice({ url: g.mqttUrl, deviceId: 'tv-new', key: NEW });
    expect(await g.metrics.value('devicegate_previous_key_connects_total')).toBe(1);
    const used = lines
      .map((l) => JSON.parse(l) as { msg: string; deviceId?: string })
      .filter((l) => l.msg === 'device connected with the previous fleet key');
    expect(used.map((l) => l.deviceId)).toEqual(['tv-old']);
    expect(lines.join('')).not.toContain(OLD);
    const other = 'yet-another-key-0123456789abcdef';
    expect((await connectRefused({ url: g.mqttUrl, deviceId: 'tv-x', key: other })).code).toBe(4);
  });

  it('without DEVICEGATE_DEVICE_KEY_PREVIOUS the old key is refused (bad user name or password)', async () => {
    const g = await gateway({});
    expect((await connectRefused({ url: g.mqttUrl, deviceId: 'tv-old', key: OLD })).code).toBe(4);
    await connectDevice({ url: g.mqttUrl, deviceId: 'tv-new', key: NEW });
  });
});

/**
 * Finding 7 of issue 10: credentials inside `DEVICEGATE_MQTT_URL` and `DEVICEGATE_REDIS_URL` appeared in the logs,
 * the banner and the unauthenticated `/readyz`. A demo gateway (the one that prints the banner) on a Mosquitto that
 * needs the gateway's password in the URL and a Redis with `requirepass`: the passwords appear nowhere it shows, and
 * neither in the error of a start that fails.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { type Running, run } from '../../src/run.ts';
import { startGateway } from '../helpers/gateway.ts';
import { capturingLogger } from '../helpers/log.ts';
import { freePort, startRedis, stopAll } from '../helpers/procs.ts';
import { type Broker, GATEWAY_PASSWORD, startBroker } from './cluster.ts';

const REDIS_PASSWORD = 'redis-pw-that-must-not-show-0123';
let broker: Broker;
let redisPort: number;
let dir: string;
const home = process.cwd();

beforeAll(async () => {
  broker = await startBroker({ key: 'url-secrets-fleet-key', devices: [] });
  redisPort = (await startRedis({ args: ['--requirepass', REDIS_PASSWORD] })).port;
  // the demo writes .devicegate/demo.json into the working directory: a temporary one, not the repository
  dir = await mkdtemp(path.join(tmpdir(), 'dg-url-secrets-'));
  process.chdir(dir);
});

afterAll(async () => {
  process.chdir(home);
  await stopAll();
  await rm(dir, { recursive: true, force: true });
});

async function env(mqttPort: number): Promise<Record<string, string>> {
  return {
    DEVICEGATE_HTTP_PORT: String(await freePort()),
    DEVICEGATE_DEMO_PORT: '0',
    DEVICEGATE_MQTT_URL: `mqtt://devicegate-1:${GATEWAY_PASSWORD}@127.0.0.1:${mqttPort}`,
    DEVICEGATE_MQTT_CLIENT_ID: 'devicegate-1',
    DEVICEGATE_REDIS_URL: `redis://:${REDIS_PASSWORD}@127.0.0.1:${redisPort}`,
    DEVICEGATE_REDIS_KEY_PREFIX: `url-secrets-${Date.now()}:`,
    DEVICEGATE_SECRET: 's'.repeat(40),
    DEVICEGATE_LOG_LEVEL: 'debug',
  };
}

function expectNoSecret(shown: string): void {
  expect(shown).not.toContain(GATEWAY_PASSWORD);
  expect(shown).not.toContain(REDIS_PASSWORD);
}

describe('credentials inside configured URLs', () => {
  it('are not in the logs, the banner or /readyz of a running gateway', async () => {
    const lines: string[] = [];
    let running: Running | undefined;
    try {
      running = await run(loadConfig(await env(broker.port)), capturingLogger(lines));
      // the demo binds this machine's LAN address when it has one (src/demo/lan.ts)
      const ready = await fetch(`${running.gateway.addresses.httpUrl}/readyz`);
      const readyBody = await ready.text();
      expect(ready.status).toBe(200);
      // still says where it is connected
      expect(readyBody).toContain(`mqtt://***@127.0.0.1:${broker.port}`);
      expect(running.banner).toContain(`mqtt://***@127.0.0.1:${broker.port}`);
      expect(lines.join('')).toContain('***@127.0.0.1');
      for (const shown of [readyBody, running.banner ?? '', lines.join('')]) expectNoSecret(shown);
    } finally {
      await running?.close();
    }
  });

  it('are not in the error of a start that cannot reach the broker, nor in its logs', async () => {
    const lines: string[] = [];
    const config = loadConfig({
      ...(await env(await freePort())),
      DEVICEGATE_UPSTREAM_ISSUER: 'http://127.0.0.1:9',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    });
    const failed = await startGateway(config, { log: capturingLogger(lines) }).then(
      () => new Error('started'),
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    );
    expect(failed.message).toContain('cannot connect to mqtt://***@127.0.0.1');
    expectNoSecret(failed.message);
    expectNoSecret(lines.join(''));
  });
});

/**
 * The composition root as production uses it: `buildGateway` returns an unstarted graph (nothing bound, nothing
 * connected), `start()` binds what the config says and reads the ports back, `close()` frees them; a port conflict
 * fails the start outside the demo (only the demo may move to another port, and it says so).
 */
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { startDemo } from '../../src/demo/launch.ts';
import { buildGateway } from '../../src/gateway/index.ts';
import { listen } from '../../src/net/listen.ts';
import { createLogger } from '../../src/observability/log.ts';
import { startDemoIdp } from '../../src/demo/idp.ts';

const log = createLogger('silent');
const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function occupied(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  const port = await listen(server, '127.0.0.1', 0);
  cleanup.push(() => new Promise((resolve) => server.close(() => resolve())));
  return { server, port };
}

async function demoUpstream() {
  const idp = await startDemoIdp({ host: '127.0.0.1', port: 0, redirectUris: [], deviceFlow: true, log });
  cleanup.push(() => idp.close());
  return idp;
}

function relayConfig(
  issuer: string,
  clientId: string,
  clientSecret: string,
  extra: Record<string, string> = {},
) {
  return loadConfig({
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_UPSTREAM_ISSUER: issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: clientSecret,
    DEVICEGATE_LOG_LEVEL: 'silent',
    ...extra,
  });
}

describe('buildGateway', () => {
  it('builds without binding anything; start() binds port 0 and reads the ports back; close() frees them', async () => {
    const idp = await demoUpstream();
    const gw = buildGateway(relayConfig(idp.issuer, idp.clientId, idp.clientSecret), { log });
    expect(gw.app.server.listening).toBe(false);
    expect(() => gw.addresses).toThrow(/has not started/);
    expect(gw.transport.status().connected).toBe(false);

    const at = await gw.start();
    cleanup.push(() => gw.close());
    const httpPort = Number(new URL(at.httpUrl).port);
    const mqttPort = Number(new URL(at.mqttUrl).port);
    expect(httpPort).toBeGreaterThan(0);
    expect(mqttPort).toBeGreaterThan(0);
    expect(at.publicUrl).toBe(`http://localhost:${httpPort}`);
    const health = await fetch(`${at.httpUrl}/healthz`);
    expect(health.status).toBe(200);

    await gw.close();
    await expect(fetch(`${at.httpUrl}/healthz`)).rejects.toThrow();
    // the MQTT port is free again: binding it succeeds
    const again = createServer();
    await listen(again, '127.0.0.1', mqttPort);
    await new Promise<void>((resolve) => again.close(() => resolve()));
  });

  it('outside the demo, a taken MQTT port fails the start and leaves nothing open', async () => {
    const idp = await demoUpstream();
    const taken = await occupied();
    const gw = buildGateway(
      relayConfig(idp.issuer, idp.clientId, idp.clientSecret, { DEVICEGATE_MQTT_PORT: String(taken.port) }),
      { log },
    );
    await expect(gw.start()).rejects.toThrow(/cannot listen/);
    expect(gw.app.server.listening).toBe(false);
  });
});

describe('the demo', () => {
  it('moves the embedded broker off a taken default port when the demo allows it, and says so', async () => {
    const taken = await occupied();
    const config = loadConfig({
      DEVICEGATE_HTTP_PORT: '0',
      DEVICEGATE_PUBLIC_URL: 'http://localhost:8080',
      DEVICEGATE_MQTT_PORT: String(taken.port),
      DEVICEGATE_DEMO_PORT: '0',
      DEVICEGATE_LOG_LEVEL: 'silent',
    });
    const demo = await startDemo(config, 'http://localhost:8080', log);
    cleanup.push(() => demo.close());
    const moved: Array<[number, number]> = [];
    const gw = buildGateway(config, {
      log,
      upstream: demo.upstream,
      mqttPortFallback: { tries: 10, onMoved: (wanted, used) => moved.push([wanted, used]) },
    });
    const at = await gw.start();
    cleanup.push(() => gw.close());
    const used = Number(new URL(at.mqttUrl).port);
    expect(used).toBeGreaterThan(taken.port);
    expect(moved).toEqual([[taken.port, used]]);
  });

  it('moves its identity provider off a taken port and says so', async () => {
    const taken = await occupied();
    const config = loadConfig({ DEVICEGATE_DEMO_PORT: String(taken.port), DEVICEGATE_LOG_LEVEL: 'silent' });
    const demo = await startDemo(config, 'http://localhost:8080', log);
    cleanup.push(() => demo.close());
    expect(demo.idp.port).toBeGreaterThan(taken.port);
    expect(demo.moves).toEqual([
      `demo identity provider: port ${taken.port} is in use, using ${demo.idp.port}`,
    ]);
    // the MQTT port came from the default, so the demo may move it too; one the environment chose stays put
    expect(demo.mqttPortFallback).toBeDefined();
    const chosen = loadConfig({ DEVICEGATE_MQTT_PORT: '0', DEVICEGATE_DEMO_PORT: '0' });
    const other = await startDemo(chosen, 'http://localhost:8080', log);
    cleanup.push(() => other.close());
    expect(other.mqttPortFallback).toBeUndefined();
  });
});

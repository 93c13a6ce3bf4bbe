/**
 * Shutdown never hangs on its own output. The gateway runs as a real child process (debug level, relay mode against
 * the demo IdP) whose stdout and stderr are pipes; the test stops reading them (a stalled reader: writes fail with
 * EAGAIN) or closes them (a dead reader: EPIPE), provokes a burst of log lines with bad MQTT connects, and signals.
 *
 * Regression: with pino's default destination the process exited into sonic-boom's `flushSync`, which retried EAGAIN
 * in `Atomics.wait` for ever — SIGTERM was ignored and the 15 s forced exit never fired.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/log.ts';
import { type DemoIdp, startDemoIdp } from '../../src/demo/idp.ts';
import { type GatewayProcess, startGatewayProcess, stopAllGateways } from '../helpers/gateway-process.ts';
import { freePort } from '../helpers/procs.ts';

/** Far below a hang, far above a shutdown on a loaded machine (the forced exit fires at 15 s). */
const EXIT_BOUND_MS = 12_000;
/** tsx compiles the sources at start: on a loaded machine that alone can take tens of seconds */
const START_BOUND_MS = 60_000;
const TEST_MS = START_BOUND_MS + EXIT_BOUND_MS + 20_000;

let idp: DemoIdp;

beforeAll(async () => {
  idp = await startDemoIdp({
    host: '127.0.0.1',
    port: 0,
    redirectUris: [],
    deviceFlow: true,
    log: createLogger('silent'),
  });
});

afterAll(async () => {
  await stopAllGateways();
  await idp.close();
});

async function gateway(): Promise<{ g: GatewayProcess; mqttPort: number }> {
  const mqttPort = await freePort();
  const g = await startGatewayProcess({
    env: {
      DEVICEGATE_LOG_LEVEL: 'debug',
      DEVICEGATE_MQTT_PORT: String(mqttPort),
      DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
      DEVICEGATE_DEVICE_KEY: 'shutdown-test-fleet-key-0123456789',
    },
    timeoutMs: START_BOUND_MS,
  });
  return { g, mqttPort };
}

/**
 * `n` connections that announce a Remaining Length of five bytes (MQTT allows four): the broker closes each at once
 * and writes a debug line ("connection closed: bad MQTT frame").
 */
async function badConnects(port: number, n: number): Promise<void> {
  const closed: Array<Promise<void>> = [];
  for (let i = 0; i < n; i++) {
    closed.push(
      new Promise((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.end(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]));
      }),
    );
    if (i % 100 === 99) await Promise.all(closed.splice(0));
  }
  await Promise.all(closed);
}

describe('shutdown with a dead or stalled output pipe', () => {
  it(
    'exits 0 on SIGTERM within the grace period while nobody reads its stdout (EAGAIN)',
    async () => {
      const { g, mqttPort } = await gateway();
      g.stopReading();
      // ~200 bytes a line: far more than the pipe and the reader's buffer hold (64 KiB each)
      await badConnects(mqttPort, 800);
      expect((await fetch(`${g.httpUrl}/healthz`)).status).toBe(200); // still serving, not blocked on its log
      g.kill('SIGTERM');
      expect(await g.waitExit(EXIT_BOUND_MS)).toEqual({ code: 0, signal: null });
    },
    TEST_MS,
  );

  it(
    'exits 0 on SIGINT within the grace period when the reader of its stdout and stderr is gone (EPIPE)',
    async () => {
      const { g, mqttPort } = await gateway();
      g.closeOutput();
      await badConnects(mqttPort, 300);
      g.kill('SIGINT');
      expect(await g.waitExit(EXIT_BOUND_MS)).toEqual({ code: 0, signal: null });
    },
    TEST_MS,
  );
});

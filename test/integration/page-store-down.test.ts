/**
 * Bridge mode with Redis down (docs/security.md, case F.47): the code-entry page answers 503 with Retry-After
 * instead of hanging or pretending the code is wrong, devices get `temporarily_unavailable`, and both recover when
 * Redis is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { startDemoIdp, type DemoIdp } from '../../src/demo/idp.ts';
import { type StartedGateway as Gateway, startGateway } from '../helpers/gateway.ts';
import { createLogger } from '../../src/observability/log.ts';
import { closeAllDevices, connectDevice } from '../helpers/device.ts';
import { freePort, startRedis, stopAll, waitFor, type ManagedProcess } from '../helpers/procs.ts';

const KEY = 'page-down-fleet-key-0123456789ab';
const log = createLogger('silent');
let idp: DemoIdp;
let redis: ManagedProcess;
let gw: Gateway;

/** A browser session: the CSRF cookie and field from GET /device, then form posts with them. */
async function entrySession(base: string): Promise<{ post(code: string): Promise<Response> }> {
  const res = await fetch(`${base}/device`);
  const html = await res.text();
  const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
  const cookie = res.headers
    .getSetCookie()
    .map((c) => c.split(';')[0])
    .join('; ');
  expect(csrf).toBeDefined();
  return {
    post: (code) =>
      fetch(`${base}/device`, {
        method: 'POST',
        redirect: 'manual',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          origin: new URL(base).origin,
          'sec-fetch-site': 'same-origin',
          cookie,
        },
        body: new URLSearchParams({ csrf: csrf!, user_code: code }).toString(),
      }),
  };
}

beforeAll(async () => {
  redis = await startRedis();
  const httpPort = await freePort();
  idp = await startDemoIdp({
    host: '127.0.0.1',
    port: 0,
    redirectUris: [`http://127.0.0.1:${httpPort}/oauth/callback`],
    deviceFlow: false,
    log,
  });
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: String(httpPort),
    DEVICEGATE_PUBLIC_URL: `http://127.0.0.1:${httpPort}`,
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'authorization_code',
    DEVICEGATE_REDIS_URL: redis.url,
    DEVICEGATE_REDIS_KEY_PREFIX: 'dg-pagedown:',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: 'p'.repeat(40),
    DEVICEGATE_LOG_LEVEL: 'silent',
  });
  gw = await startGateway(config, { log });
});

afterAll(async () => {
  await closeAllDevices();
  await gw?.close();
  await idp?.close();
  await stopAll();
});

describe('Redis down in bridge mode', () => {
  it('the page answers 503 with Retry-After, devices get temporarily_unavailable, and both recover', async () => {
    const tv = await connectDevice({ url: gw.mqttUrl, deviceId: 'tv-down', key: KEY });
    const pending = (await tv.ask('authorize', { rid: 'd1' }, { status: 'pending' })).json!;
    const code = String(pending.user_code);
    const session = await entrySession(gw.publicUrl);

    await redis.stop();
    const page = await session.post(code);
    expect(page.status).toBe(503);
    expect(page.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await page.text()).not.toContain(code.replace('-', ''));
    const ready = await fetch(`${gw.httpUrl}/readyz`);
    expect(ready.status).toBe(503);
    const err = await tv.ask('status', { rid: 'd1' }, { status: 'error' });
    expect(err.json).toMatchObject({ error: 'temporarily_unavailable', retry_after: expect.any(Number) });

    await redis.restart();
    await waitFor(async () => (await fetch(`${gw.httpUrl}/readyz`)).status === 200, 10_000, 'ready again');
    // no persistence on this Redis: the flow is gone, and the page says so with its one generic message (the same
    // answer as for any unknown code)
    const after = await session.post(code);
    const unknown = await session.post('BCDF-GHJK');
    expect(after.status).toBe(unknown.status);
    expect(await after.text()).toContain('not valid');
  });
});

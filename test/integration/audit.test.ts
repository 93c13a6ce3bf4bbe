/**
 * The audit trail (src/observability/audit.ts) through the production graph: a real embedded broker and device, the
 * demo identity provider as the upstream, the person played over HTTP. Each mode's flow writes its audit events in
 * order, with the device id, the person's subject and — in bridge mode — the person's network; no log line at any
 * level carries the token, the user code or the device's password.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { devicePassword } from '../../src/core/crypto.ts';
import { startDemoIdp } from '../../src/demo/idp.ts';
import { AUDIT_EVENTS } from '../../src/observability/audit.ts';
import { createLogger } from '../../src/observability/log.ts';
import { closeAllDevices, connectDevice } from '../helpers/device.ts';
import { startGateway } from '../helpers/gateway.ts';
import { approveDeviceCode, authorizeInBrowserlessFlow } from '../helpers/idp-person.ts';
import { capturingLogger } from '../helpers/log.ts';
import { freePort } from '../helpers/procs.ts';

const KEY = 'audit-test-fleet-key-0123456789';
const cleanup: Array<() => Promise<void>> = [];

afterEach(async () => {
  await closeAllDevices();
  for (const c of cleanup.splice(0).reverse()) await c();
});

type Line = Record<string, unknown>;

function auditOf(lines: string[]): Line[] {
  const events: readonly string[] = AUDIT_EVENTS;
  return lines.map((l) => JSON.parse(l) as Line).filter((l) => events.includes(String(l.event)));
}

function expectNoSecrets(lines: string[], secrets: string[]): void {
  const text = lines.join('');
  for (const s of secrets) expect(text.includes(s), `a log line carries ${s.slice(0, 6)}…`).toBe(false);
}

async function upstream(redirectUris: string[], deviceFlow: boolean) {
  const idp = await startDemoIdp({
    host: '127.0.0.1',
    port: 0,
    redirectUris,
    deviceFlow,
    log: createLogger('silent'),
  });
  cleanup.push(() => idp.close());
  return idp;
}

/** A gateway on `idp` (with `env` on top), logging every level into `lines`, and device `deviceId` connected to it. */
async function gatewayWithDevice(
  idp: { issuer: string; clientId: string; clientSecret: string },
  env: Record<string, string>,
  deviceId: string,
) {
  const lines: string[] = [];
  const gw = await startGateway(
    loadConfig({
      DEVICEGATE_HTTP_PORT: '0',
      DEVICEGATE_MQTT_PORT: '0',
      DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
      DEVICEGATE_DEVICE_KEY: KEY,
      ...env,
    }),
    { log: capturingLogger(lines, 'trace') },
  );
  cleanup.push(() => gw.close());
  return { lines, tv: await connectDevice({ url: gw.mqttUrl, deviceId, key: KEY }) };
}

/** The same-origin page a person sees at the gateway: GET /device, the code, Approve or Deny (cookies kept). */
async function decideOnPage(publicUrl: string, userCode: string, decision: 'approve' | 'deny') {
  const jar: string[] = [];
  const send = async (path: string, form?: Record<string, string>) => {
    const res = await fetch(`${publicUrl}${path}`, {
      method: form === undefined ? 'GET' : 'POST',
      redirect: 'manual',
      headers: {
        cookie: jar.join('; '),
        ...(form !== undefined && {
          'content-type': 'application/x-www-form-urlencoded',
          origin: publicUrl,
          'sec-fetch-site': 'same-origin',
        }),
      },
      ...(form !== undefined && { body: new URLSearchParams(form).toString() }),
    });
    for (const c of res.headers.getSetCookie()) jar.push(c.split(';', 1)[0]!);
    return res;
  };
  const csrf = /name="csrf" value="([^"]+)"/.exec(await (await send('/device')).text())![1]!;
  await send('/device', { csrf, user_code: userCode });
  const decided = await send('/device/decision', { csrf, user_code: userCode, decision });
  return { location: decided.headers.get('location')!, send };
}

describe('audit events', () => {
  it('relay mode: flow.started, flow.approved (with the subject), token.delivered — and no secret in any line', async () => {
    const idp = await upstream([], true);
    const { lines, tv } = await gatewayWithDevice(idp, {}, 'tv-audit-relay');
    const p = (await tv.ask('authorize', { rid: 'a1', scope: 'openid' }, { status: 'pending' })).json!;
    await approveDeviceCode(String(p.verification_uri), String(p.user_code));
    const token = (await tv.waitForReply({ rid: 'a1', status: 'authorized' }, { timeoutMs: 15_000 })).json!;

    await expect.poll(() => auditOf(lines).length).toBe(3);
    const device = { deviceId: 'tv-audit-relay', rid: 'a1' };
    expect(auditOf(lines)).toEqual([
      expect.objectContaining({ event: 'flow.started', ...device, mode: 'device', network: '127.0.0.1' }),
      expect.objectContaining({ event: 'flow.approved', ...device, subject: idp.username, level: 30 }),
      expect.objectContaining({ event: 'token.delivered', ...device }),
    ]);
    const code = String(p.user_code);
    const secrets = [String(token.access_token), String(token.id_token), code, code.replace('-', '')];
    expectNoSecrets(lines, [...secrets, devicePassword(KEY, 'tv-audit-relay')]);
  });

  it('bridge mode: a denial names the person’s network; an approval the subject and network — no secret in any line', async () => {
    const port = await freePort();
    const publicUrl = `http://127.0.0.1:${port}`;
    const idp = await upstream([`${publicUrl}/oauth/callback`], false);
    const { lines, tv } = await gatewayWithDevice(
      idp,
      {
        DEVICEGATE_HTTP_PORT: String(port),
        DEVICEGATE_PUBLIC_URL: publicUrl,
        DEVICEGATE_UPSTREAM_MODE: 'authorization_code',
      },
      'tv-audit-bridge',
    );

    const denied = (await tv.ask('authorize', { rid: 'd1' }, { status: 'pending' })).json!;
    expect((await decideOnPage(publicUrl, String(denied.user_code), 'deny')).location).toMatch(/denied/);
    await tv.waitForReply({ rid: 'd1', status: 'error' });

    const p = (await tv.ask('authorize', { rid: 'b1' }, { status: 'pending' })).json!;
    const page = await decideOnPage(publicUrl, String(p.user_code), 'approve');
    const callback = await authorizeInBrowserlessFlow(page.location);
    await page.send(`${callback.pathname}${callback.search}`);
    const token = (await tv.waitForReply({ rid: 'b1', status: 'authorized' })).json!;

    await expect.poll(() => auditOf(lines).length).toBe(5);
    const bridge = { deviceId: 'tv-audit-bridge', mode: 'authorization_code' };
    expect(auditOf(lines)).toEqual([
      expect.objectContaining({ event: 'flow.started', ...bridge, rid: 'd1', network: '127.0.0.1' }),
      expect.objectContaining({ event: 'flow.denied', ...bridge, rid: 'd1', network: '127.0.0.1' }),
      expect.objectContaining({ event: 'flow.started', ...bridge, rid: 'b1' }),
      expect.objectContaining({
        event: 'flow.approved',
        ...bridge,
        rid: 'b1',
        subject: idp.username,
        network: '127.0.0.1',
      }),
      expect.objectContaining({ event: 'token.delivered', deviceId: 'tv-audit-bridge', rid: 'b1' }),
    ]);
    const codes = [String(denied.user_code), String(p.user_code)].flatMap((c) => [c, c.replace('-', '')]);
    const secrets = [String(token.access_token), String(callback.searchParams.get('code'))];
    expectNoSecrets(lines, [...codes, ...secrets, devicePassword(KEY, 'tv-audit-bridge')]);
  });
});

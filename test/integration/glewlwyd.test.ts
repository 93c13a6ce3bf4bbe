/**
 * A real third-party OpenID provider, Glewlwyd from Debian's `glewlwyd` package, set up by the test from nothing
 * (test/helpers/glewlwyd.ts: own config, SQLite database from the package's schema, plugin, scope, user and client
 * created through its admin API), in front of the real gateway (startGateway: embedded aedes broker, memory store).
 * Relay mode uses Glewlwyd's RFC 8628 endpoint and its device verification; bridge mode sends the person from the
 * gateway's page to Glewlwyd's authorize endpoint (code + PKCE) and back to `/oauth/callback`. In both, the token the
 * device gets is one Glewlwyd accepts at its userinfo endpoint.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/observability/log.ts';
import { type TestDevice, closeAllDevices, connectDevice } from '../helpers/device.ts';
import { type StartedGateway as Gateway, startGateway } from '../helpers/gateway.ts';
import { type Glewlwyd, GlewlwydPerson, startGlewlwyd } from '../helpers/glewlwyd.ts';
import { freePort } from '../helpers/procs.ts';

const KEY = 'glewlwyd-test-fleet-key-0123456789';
const log = createLogger('silent');

let idp: Glewlwyd;
let relay: Gateway;
let bridge: Gateway;
let bridgeUrl: string;

async function gateway(
  mode: 'device' | 'authorization_code',
  extra: Record<string, string> = {},
  upstream: Glewlwyd = idp,
): Promise<Gateway> {
  const scope = idp.scopes.join(' ');
  const config = loadConfig({
    DEVICEGATE_HTTP_HOST: '127.0.0.1',
    DEVICEGATE_HTTP_PORT: String(await freePort()),
    DEVICEGATE_MQTT_HOST: '127.0.0.1',
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_UPSTREAM_ISSUER: upstream.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: upstream.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: upstream.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: mode,
    DEVICEGATE_DEFAULT_SCOPE: scope,
    DEVICEGATE_ALLOWED_SCOPES: scope,
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: 'glewlwyd-test-gateway-secret-0123456789',
    DEVICEGATE_LOG_LEVEL: 'silent',
    ...extra,
  });
  const g = await startGateway(config, { log });
  // discovery runs in the background: the first request must not race it
  await g.upstream.ready();
  return g;
}

beforeAll(async () => {
  // the bridge gateway's callback must be registered at Glewlwyd before the gateway starts (discovery at start)
  const bridgePort = await freePort();
  bridgeUrl = `http://127.0.0.1:${bridgePort}`;
  idp = await startGlewlwyd({ redirectUris: [`${bridgeUrl}/oauth/callback`] });
  relay = await gateway('device');
  bridge = await gateway('authorization_code', {
    DEVICEGATE_HTTP_PORT: String(bridgePort),
    DEVICEGATE_PUBLIC_URL: bridgeUrl,
  });
}, 30_000);

afterEach(closeAllDevices);

afterAll(async () => {
  await relay?.close();
  await bridge?.close();
  await idp?.stop();
});

function device(g: Gateway, id: string): Promise<TestDevice> {
  return connectDevice({ url: g.mqttUrl, deviceId: id, key: KEY });
}

/** Glewlwyd's userinfo endpoint (from its discovery document) with `accessToken`. */
async function userinfo(accessToken: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const meta = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as {
    userinfo_endpoint: string;
  };
  const res = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('relay mode: Glewlwyd’s RFC 8628 endpoint', () => {
  it('a device asks, the person approves at Glewlwyd, the device gets a token Glewlwyd accepts', async () => {
    const tv = await device(relay, 'tv-glewlwyd-relay');
    const pending = await tv.ask('authorize', { rid: 'g1' }, { status: 'pending' });
    const p = pending.json!;
    expect(String(p.verification_uri)).toBe(`${idp.issuer}/device`);
    expect(p.user_code).toEqual(expect.any(String));

    await new GlewlwydPerson(idp).approveDevice(String(p.verification_uri_complete));
    const done = await tv.waitForReply({ rid: 'g1', status: 'authorized' }, { timeoutMs: 15_000 });
    const a = done.json!;
    // Glewlwyd answers `token_type: "bearer"`; the device sees the canonical spelling
    expect(a).toMatchObject({ rid: 'g1', status: 'authorized', token_type: 'Bearer', scope: 'openid tv' });
    const info = await userinfo(String(a.access_token));
    expect(info.status).toBe(200);
    expect(info.body.sub).toEqual(expect.any(String));
  });
});

describe('Glewlwyd’s Basic credentials quirk', () => {
  let dashed: Glewlwyd;
  let dashedGw: Gateway | undefined;

  beforeAll(async () => {
    dashed = await startGlewlwyd({ redirectUris: [], clientSecret: 'dash-in-the-secret-0123456789' });
  });

  let postGw: Gateway | undefined;

  afterAll(async () => {
    await dashedGw?.close();
    await postGw?.close();
    await dashed?.stop();
  });

  it('the recipe works: with DEVICEGATE_UPSTREAM_AUTH_METHOD=client_secret_post the same secret gets the device a token', async () => {
    postGw = await gateway('device', { DEVICEGATE_UPSTREAM_AUTH_METHOD: 'client_secret_post' }, dashed);
    const tv = await device(postGw, 'tv-glewlwyd-post');
    const p = (await tv.ask('authorize', { rid: 'p1' }, { status: 'pending' })).json!;
    await new GlewlwydPerson(dashed).approveDevice(String(p.verification_uri_complete));
    const done = await tv.waitForReply({ rid: 'p1', status: 'authorized' }, { timeoutMs: 15_000 });
    expect(done.json).toMatchObject({ rid: 'p1', status: 'authorized', token_type: 'Bearer' });
  });

  // RFC 6749 §2.3.1: Basic credentials are form-encoded first, so the gateway sends `dash%2Din%2Dthe…`; Glewlwyd
  // compares that with the stored secret as is. The recipe (docs/upstreams.md) registers `client_secret_post`.
  it('a secret with "-" is refused under client_secret_basic; the same secret in the body is accepted', async () => {
    dashedGw = await gateway('device', {}, dashed);
    const tv = await device(dashedGw, 'tv-glewlwyd-dashed');
    const r = await tv.ask('authorize', { rid: 'q1' }, { status: 'error' });
    expect(r.json).toMatchObject({ rid: 'q1', error: 'unauthorized_client' });

    const res = await fetch(`${dashed.issuer}/device_authorization`, {
      method: 'POST',
      body: new URLSearchParams({
        client_id: dashed.clientId,
        client_secret: dashed.clientSecret,
        scope: 'openid',
      }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ device_code: expect.any(String) });
  });
});

describe('bridge mode: Glewlwyd’s authorization code + PKCE', () => {
  it('gateway page → Glewlwyd sign-in → callback → the device gets a token Glewlwyd accepts', async () => {
    const tv = await device(bridge, 'tv-glewlwyd-bridge');
    const pending = await tv.ask('authorize', { rid: 'b1' }, { status: 'pending' });
    const p = pending.json!;
    expect(p.verification_uri).toBe(`${bridgeUrl}/device`);

    // the person scans the device's link: the gateway's confirm page, Approve
    const page = new GatewayPage();
    const confirm = await page.get(String(p.verification_uri_complete));
    expect(confirm.status).toBe(200);
    const toIdp = await page.post('/device/decision', { ...hiddenFields(confirm.html), decision: 'approve' });
    const authorize = new URL(toIdp);
    expect(`${authorize.origin}${authorize.pathname}`).toBe(`${idp.issuer}/auth`);
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${bridgeUrl}/oauth/callback`);

    // at Glewlwyd: sign in, consent, back to the gateway's callback with a code
    const callback = await new GlewlwydPerson(idp).authorize(toIdp);
    expect(`${callback.origin}${callback.pathname}`).toBe(`${bridgeUrl}/oauth/callback`);
    expect(callback.searchParams.get('code')).toEqual(expect.any(String));
    const done = await page.get(callback.href);
    expect(done.url.pathname).toBe('/device/done');
    expect(done.html).toContain('Device connected');

    const r = await tv.waitForReply({ rid: 'b1', status: 'authorized' }, { timeoutMs: 15_000 });
    const a = r.json!;
    expect(a).toMatchObject({ rid: 'b1', status: 'authorized', token_type: 'Bearer' });
    const info = await userinfo(String(a.access_token));
    expect(info.status).toBe(200);
    expect(info.body.sub).toEqual(expect.any(String));
  });
});

/** The gateway's pages as a browser sees them: its session cookie, redirects within the gateway followed. */
class GatewayPage {
  #cookies = new Map<string, string>();

  /** GET, following the gateway's own redirects; resolves with the final page. */
  async get(href: string): Promise<{ url: URL; status: number; html: string }> {
    let url = new URL(href, bridgeUrl);
    for (let hops = 0; hops < 5; hops++) {
      const res = await fetch(url, { redirect: 'manual', headers: this.#headers() });
      this.#keep(res);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location !== null) {
        await res.body?.cancel();
        url = new URL(location, url);
        continue;
      }
      return { url, status: res.status, html: await res.text() };
    }
    throw new Error('too many redirects at the gateway');
  }

  /** POSTs a form as the page would (same-origin `Origin`); resolves with the redirect target (303). */
  async post(path: string, fields: Record<string, string>): Promise<string> {
    const res = await fetch(new URL(path, bridgeUrl), {
      method: 'POST',
      redirect: 'manual',
      headers: {
        ...this.#headers(),
        origin: bridgeUrl,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams(fields).toString(),
    });
    this.#keep(res);
    const location = res.headers.get('location');
    if (res.status !== 303 || location === null)
      throw new Error(`POST ${path} → HTTP ${res.status}: ${await res.text()}`);
    return location;
  }

  #headers(): Record<string, string> {
    const cookie = [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    return { accept: 'text/html', ...(cookie !== '' && { cookie }) };
  }

  #keep(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq > 0) this.#cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  }
}

/** The hidden inputs of the page's decision form (`csrf`, `user_code`, and the scanned link's proof `k`). */
function hiddenFields(html: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of html.matchAll(/<input\s+type="hidden"\s+name="([^"]+)"\s+value="([^"]*)"/g)) {
    out[m[1]!] = m[2]!.replaceAll('&amp;', '&');
  }
  return out;
}

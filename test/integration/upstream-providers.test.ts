/**
 * The recipes of docs/upstreams.md, end to end: for each hosted provider, the gateway is configured exactly as its
 * recipe says (`loadConfig` from the recipe's variables, `startGateway`, the embedded broker), a device asks over MQTT,
 * the fake provider (test/helpers/fake-provider.ts, shaped after the provider's documentation) is approved, and the
 * device gets the token the provider issued. The real servers (node-oidc-provider, Glewlwyd) have tests of their own:
 * test/integration/upstream.test.ts and test/integration/glewlwyd.test.ts.
 */
import { generateKeyPairSync, createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JWK } from 'jose';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { NO_SUBJECT } from '../../src/service/bridge.ts';
import { createLogger } from '../../src/observability/log.ts';
import { closeAllDevices, connectDevice } from '../helpers/device.ts';
import {
  type FakeProvider,
  type FakeProviderOptions,
  type ProviderName,
  startFakeProvider,
} from '../helpers/fake-provider.ts';
import { type StartedGateway, startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/procs.ts';

const KEY = 'providers-fleet-key-0123456789abcdef';
const log = createLogger('silent');
const dir = mkdtempSync(join(tmpdir(), 'dg-providers-'));
const running: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await closeAllDevices();
  for (const r of running.splice(0).reverse()) await r.close();
});

afterAll(async () => {
  await closeAllDevices();
});

async function provider(name: ProviderName, o: FakeProviderOptions = {}): Promise<FakeProvider> {
  const p = await startFakeProvider(name, o);
  running.push(p);
  return p;
}

async function gateway(env: Record<string, string>): Promise<StartedGateway> {
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: String(await freePort()),
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_POLL_INTERVAL: '1',
    ...env,
  });
  const gw = await startGateway(config, { log });
  running.push(gw);
  await gw.upstream.ready();
  return gw;
}

/** A device flow through the gateway: authorize, the person approves at the provider, the device gets its token. */
async function deviceFlow(
  gw: StartedGateway,
  p: FakeProvider,
  deviceId: string,
): Promise<Record<string, unknown>> {
  const device = await connectDevice({ url: gw.mqttUrl, deviceId, key: KEY });
  const pending = (await device.ask('authorize', { rid: 'r1', scope: 'openid' }, { status: 'pending' }))
    .json!;
  expect(pending.verification_uri).toBe(`${p.origin}/device`);
  const userCode = String(pending.user_code);
  // the person approves once the gateway has polled at least once (so the provider's "pending" answer is met)
  const firstPoll = Date.now();
  while (!p.requests.some((r) => p.tokenEndpoint.endsWith(r.path))) {
    if (Date.now() - firstPoll > 5000) throw new Error('the gateway never polled');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  p.approve(userCode);
  const done = (await device.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 15_000 })).json!;
  expect(done.access_token).toBe(p.issued.get(userCode));
  expect(done.token_type).toBe('Bearer');
  return done;
}

/** A private key file in the form `private_key_jwt` takes, and the public JWK registered at the provider. */
function clientKey(kind: 'jwk-with-x5t' | 'pem'): { path: string; publicJwk: JWK } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicJwk = publicKey.export({ format: 'jwk' }) as JWK;
  if (kind === 'pem') {
    const path = join(dir, 'client.pem');
    writeFileSync(path, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    return { path, publicJwk };
  }
  // Entra ID finds the uploaded certificate by its SHA-256 thumbprint; any stable value stands in for it here.
  const x5t = createHash('sha256').update(JSON.stringify(publicJwk)).digest('base64url');
  const path = join(dir, 'client.jwk');
  writeFileSync(
    path,
    JSON.stringify({ ...privateKey.export({ format: 'jwk' }), kid: 'k1', 'x5t#S256': x5t }),
  );
  return { path, publicJwk: { ...publicJwk, kid: 'k1', 'x5t#S256': x5t } };
}

describe('provider recipes (docs/upstreams.md)', () => {
  it('GitHub: no discovery, configured endpoints, public client, 200 + error while polling, slow_down with a new interval', async () => {
    const p = await provider('github', { slowDownFirst: true });
    // the recipe's variables; the issuer names GitHub (it is never fetched)
    const gw = await gateway({
      DEVICEGATE_UPSTREAM_ISSUER: p.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: p.clientId,
      DEVICEGATE_UPSTREAM_DEVICE_AUTHORIZATION_ENDPOINT: p.deviceEndpoint!,
      DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT: p.tokenEndpoint,
    });
    expect(gw.upstream.status()).toMatchObject({ ready: true });
    await deviceFlow(gw, p, 'gh-1');
    // nothing but the two endpoints was asked (no discovery), always for JSON, with client_id in the body only
    expect(new Set(p.requests.map((r) => r.path))).toEqual(
      new Set(['/login/device/code', '/login/oauth/access_token']),
    );
    expect(p.requests.every((r) => r.accept.includes('application/json') && r.auth === 'none')).toBe(true);
    const polls = p.requests.filter((r) => r.path === '/login/oauth/access_token');
    // 200 + `slow_down` with `interval: 2`, then 200 + `authorization_pending` at least once, then the token
    expect(polls.map((r) => r.status).every((s) => s === 200)).toBe(true);
    expect(polls.length).toBeGreaterThanOrEqual(2);
    // the poll after slow_down waited the interval GitHub named (2 s), not 1 + 5 s
    const gap = polls[1]!.at - polls[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(1900);
    expect(gap).toBeLessThan(5000);
  });

  it('Google: discovery, client_secret_post (Basic is refused), verification_url, 428 pending and 403 slow_down', async () => {
    const p = await provider('google', { slowDownFirst: true });
    const gw = await gateway({
      DEVICEGATE_UPSTREAM_ISSUER: p.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: p.clientId,
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: p.clientSecret,
      DEVICEGATE_UPSTREAM_AUTH_METHOD: 'client_secret_post',
    });
    await deviceFlow(gw, p, 'google-1');
    const polls = p.requests.filter((r) => r.path === '/token');
    expect(polls.every((r) => r.auth === 'client_secret_post')).toBe(true);
    expect(polls.map((r) => r.status)).toEqual(expect.arrayContaining([403, 200]));
    // 403 slow_down without an interval: RFC 8628's +5 s
    expect(polls[1]!.at - polls[0]!.at).toBeGreaterThanOrEqual(5500);
  }, 20_000);

  it('Google with the default Basic authentication: the device is told unauthorized_client', async () => {
    const p = await provider('google');
    const gw = await gateway({
      DEVICEGATE_UPSTREAM_ISSUER: p.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: p.clientId,
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: p.clientSecret,
    });
    const device = await connectDevice({ url: gw.mqttUrl, deviceId: 'google-2', key: KEY });
    const pending = (await device.ask('authorize', { rid: 'r1' }, { status: 'pending' })).json!;
    p.approve(String(pending.user_code));
    const err = (await device.waitForReply({ rid: 'r1', status: 'error' }, { timeoutMs: 10_000 })).json!;
    expect(err.error).toBe('unauthorized_client');
    expect(p.requests.find((r) => r.path === '/token')).toMatchObject({
      status: 401,
      auth: 'client_secret_basic',
    });
  });

  it('Microsoft Entra ID: tenant issuer, private_key_jwt with a JWK naming the certificate (x5t#S256)', async () => {
    const key = clientKey('jwk-with-x5t');
    const p = await provider('entra', {
      tenant: '7d1c0a5e-0000-4000-8000-000000000001',
      clientPublicJwk: key.publicJwk,
    });
    expect(p.issuer).toMatch(/\/7d1c0a5e-0000-4000-8000-000000000001\/v2\.0$/);
    const gw = await gateway({
      DEVICEGATE_UPSTREAM_ISSUER: p.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: p.clientId,
      DEVICEGATE_UPSTREAM_AUTH_METHOD: 'private_key_jwt',
      DEVICEGATE_UPSTREAM_CLIENT_KEY: key.path,
      DEVICEGATE_ALLOW_INSECURE_UPSTREAM: 'true',
    });
    await deviceFlow(gw, p, 'entra-1');
    const polls = p.requests.filter((r) => r.path.endsWith('/oauth2/v2.0/token'));
    expect(polls.every((r) => r.auth === 'private_key_jwt')).toBe(true);
    expect(polls.at(-1)!.status).toBe(200);
  });

  it('Auth0: issuer with a trailing slash, a Native (public) application, 403 authorization_pending', async () => {
    const p = await provider('auth0');
    expect(p.issuer.endsWith('/')).toBe(true);
    const gw = await gateway({
      DEVICEGATE_UPSTREAM_ISSUER: p.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: p.clientId,
    });
    await deviceFlow(gw, p, 'auth0-1');
    expect(p.requests.every((r) => r.auth === 'none')).toBe(true);
    expect(p.requests.filter((r) => r.path === '/oauth/token').map((r) => r.status)).toEqual(
      expect.arrayContaining([403, 200]),
    );
  });

  it('Okta: custom authorization server issuer, private_key_jwt with a PEM key', async () => {
    const key = clientKey('pem');
    const p = await provider('okta', { clientPublicJwk: key.publicJwk });
    const gw = await gateway({
      DEVICEGATE_UPSTREAM_ISSUER: p.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: p.clientId,
      DEVICEGATE_UPSTREAM_AUTH_METHOD: 'private_key_jwt',
      DEVICEGATE_UPSTREAM_CLIENT_KEY: key.path,
    });
    await deviceFlow(gw, p, 'okta-1');
    expect(
      p.requests.filter((r) => r.path.endsWith('/v1/token')).every((r) => r.auth === 'private_key_jwt'),
    ).toBe(true);
  });

  it('Keycloak: realm issuer, client_secret_basic with a secret that needs URL-encoding', async () => {
    const p = await provider('keycloak', { tenant: 'devices', clientSecret: 'a-b+c/d=e%f g' });
    const gw = await gateway({
      DEVICEGATE_UPSTREAM_ISSUER: p.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: p.clientId,
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: p.clientSecret,
    });
    await deviceFlow(gw, p, 'kc-1');
    expect(
      p.requests.filter((r) => r.path.endsWith('/token')).every((r) => r.auth === 'client_secret_basic'),
    ).toBe(true);
  });

  /** A device's flow through the code-entry page, Cognito's hosted UI and back; what the callback answered. */
  async function cognitoSignIn(env: Record<string, string>) {
    const p = await provider('cognito', { tenant: 'eu-west-1_AbCdEf123' });
    const port = await freePort();
    const publicUrl = `http://127.0.0.1:${port}`;
    const gw = await gateway({
      DEVICEGATE_HTTP_PORT: String(port),
      DEVICEGATE_PUBLIC_URL: publicUrl,
      DEVICEGATE_UPSTREAM_MODE: 'authorization_code',
      DEVICEGATE_UPSTREAM_ISSUER: p.issuer,
      DEVICEGATE_UPSTREAM_CLIENT_ID: p.clientId,
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: p.clientSecret,
      ...env,
    });
    const device = await connectDevice({ url: gw.mqttUrl, deviceId: 'cognito-1', key: KEY });
    const pending = (await device.ask('authorize', { rid: 'r1', scope: 'openid' }, { status: 'pending' }))
      .json!;
    expect(String(pending.verification_uri).startsWith(publicUrl)).toBe(true);
    // the person, in a browser: the code-entry page, Approve, Cognito's hosted UI, back to the callback
    const browser = new Browser(publicUrl);
    const entry = await browser.get('/device');
    const csrf = /name="csrf" value="([^"]+)"/.exec(await entry.text())![1]!;
    const userCode = String(pending.user_code);
    expect((await browser.post('/device', { csrf, user_code: userCode })).status).toBe(200);
    const approved = await browser.post('/device/decision', {
      csrf,
      user_code: userCode,
      decision: 'approve',
    });
    expect(approved.status).toBe(303);
    const authorize = new URL(approved.headers.get('location')!);
    expect(authorize.href.startsWith(p.authorizeEndpoint!)).toBe(true);
    const back = await fetch(authorize, { redirect: 'manual' });
    const callback = new URL(back.headers.get('location')!);
    expect(callback.href.startsWith(`${publicUrl}/oauth/callback`)).toBe(true);
    const done = await browser.get(`${callback.pathname}${callback.search}`);
    return { p, device, authorize, location: done.headers.get('location') };
  }

  it('AWS Cognito: bridge mode (no device endpoint), the person signs in through the code-entry page', async () => {
    // this fake issues no ID token (real Cognito does, for `openid`): without the approval cap, none is needed
    const { p, device, authorize, location } = await cognitoSignIn({ DEVICEGATE_APPROVALS_PER_PERSON: '0' });
    expect(location).toMatch(/^\/device\/done\?result=authorized&d=[\w-]+$/);
    const reply = (await device.waitForReply({ rid: 'r1', status: 'authorized' })).json!;
    expect(reply.access_token).toBe(p.issued.get(authorize.searchParams.get('code_challenge')!));
    const token = p.requests.find((r) => r.path === '/oauth2/token');
    expect(token).toMatchObject({ status: 200, auth: 'client_secret_basic' });
  });

  it('with the approval cap on, a sign-in whose answer names no person (no ID token) is refused, not uncounted', async () => {
    const { device, location } = await cognitoSignIn({});
    expect(location).toMatch(/^\/device\/done\?result=denied&d=[\w-]+$/);
    const reply = (await device.waitForReply({ rid: 'r1', status: 'error' })).json!;
    expect(reply).toMatchObject({ error: 'access_denied', error_description: NO_SUBJECT });
    expect(reply).not.toHaveProperty('access_token');
  });
});

/** Just enough of a browser for the code-entry page over real HTTP: a cookie jar and same-origin form posts. */
class Browser {
  readonly #origin: string;
  readonly #jar = new Map<string, string>();

  constructor(origin: string) {
    this.#origin = origin;
  }

  get(path: string): Promise<Response> {
    return this.#send(path, { method: 'GET' });
  }

  post(path: string, form: Record<string, string>): Promise<Response> {
    return this.#send(path, {
      method: 'POST',
      body: new URLSearchParams(form).toString(),
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        origin: this.#origin,
        'sec-fetch-site': 'same-origin',
      },
    });
  }

  async #send(path: string, init: { method: string; body?: string; headers?: Record<string, string> }) {
    const res = await fetch(`${this.#origin}${path}`, {
      ...init,
      redirect: 'manual',
      headers: { ...init.headers, cookie: [...this.#jar].map(([k, v]) => `${k}=${v}`).join('; ') },
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair = ''] = c.split(';', 1);
      const eq = pair.indexOf('=');
      this.#jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    return res;
  }
}

/**
 * Relay mode end to end, with real parts only: the gateway (embedded aedes, memory store), node-oidc-provider as
 * the upstream with its RFC 8628 endpoint, mqtt.js and mosquitto_pub/mosquitto_sub as devices, and the upstream's
 * verification pages driven over HTTP like a person would.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { compactDecrypt, exportJWK, generateKeyPair } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import type { Logger } from 'pino';
import { deriveKeys, devicePassword } from '../../src/core/crypto.ts';
import { dueAt } from '../../src/core/engine.ts';
import type { PublicJwk } from '../../src/core/flow.ts';
import { startDemoIdp, type DemoIdp } from '../../src/demo/idp.ts';
import { type StartedGateway as Gateway, startGateway } from '../helpers/gateway.ts';
import { createLogger } from '../../src/observability/log.ts';
import { GrantStore } from '../../src/service/grants.ts';
import { closeAllDevices, connectDevice, type TestDevice } from '../helpers/device.ts';
import { introspect, keptRefreshToken } from '../helpers/grants.ts';
import { approveDeviceCode } from '../helpers/idp-person.ts';
import { freePort, startRedis, stopAll, waitFor } from '../helpers/procs.ts';
import { relayScenarios, userinfo } from './relay-scenarios.ts';

const KEY = 'relay-test-fleet-key-0123456789';
const SECRET = 's'.repeat(40);
/** A 1024-bit RSA key: accepted by the gateway before issue 11, then unusable at delivery (jose needs 2048 bits). */
const WEAK_RSA = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
  format: 'jwk',
}) as PublicJwk;
/** An X25519 point of order 8 (RFC 7748 §6.1): any agreement with it gives the all-zero shared secret. */
const LOW_ORDER_X25519 = {
  kty: 'OKP',
  crv: 'X25519',
  x: Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex').toString(
    'base64url',
  ),
};
const log = createLogger('silent');
let idp: DemoIdp;
let shortIdp: DemoIdp;
let gw: Gateway;
let shortGw: Gateway;

async function gateway(
  upstream: DemoIdp,
  extra: Record<string, string> = {},
  logger: Logger = log,
): Promise<Gateway> {
  const config = loadConfig({
    ...extra,
    DEVICEGATE_HTTP_PORT: String(await freePort()),
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_UPSTREAM_ISSUER: upstream.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: upstream.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: upstream.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'device',
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: SECRET,
    DEVICEGATE_LOG_LEVEL: 'silent',
  });
  return startGateway(config, { log: logger });
}

async function device(g: Gateway, id: string): Promise<TestDevice> {
  return connectDevice({ url: g.mqttUrl, deviceId: id, key: KEY });
}

beforeAll(async () => {
  idp = await startDemoIdp({ host: '127.0.0.1', port: 0, redirectUris: [], deviceFlow: true, log });
  shortIdp = await startDemoIdp({
    host: '127.0.0.1',
    port: 0,
    redirectUris: [],
    deviceFlow: true,
    log,
    ttl: { deviceCode: 2 },
  });
  gw = await gateway(idp);
  shortGw = await gateway(shortIdp);
});

afterEach(closeAllDevices);

afterAll(async () => {
  await gw?.close();
  await shortGw?.close();
  await idp?.close();
  await shortIdp?.close();
  await stopAll();
});

describe('relay mode, mqtt.js device', () => {
  relayScenarios('tv-relay', () => ({ idp, device: (id) => device(gw, id) }));

  it('the person denies → access_denied pushed at once after the next poll', async () => {
    const tv = await device(gw, 'tv-relay-2');
    const p = (await tv.ask('authorize', { rid: 'd1' }, { status: 'pending' })).json!;
    await approveDeviceCode(String(p.verification_uri), String(p.user_code), { deny: true });
    const r = await tv.waitForReply({ rid: 'd1', status: 'error' }, { timeoutMs: 10_000 });
    expect(r.json).toMatchObject({ rid: 'd1', error: 'access_denied' });
  });

  it('nobody approves → expired_token is pushed when the code expires', async () => {
    const tv = await device(shortGw, 'tv-relay-3');
    const p = (await tv.ask('authorize', { rid: 'e1' }, { status: 'pending' })).json!;
    expect(p.expires_in).toBeLessThanOrEqual(2);
    const r = await tv.waitForReply({ rid: 'e1', status: 'error' }, { timeoutMs: 10_000 });
    expect(r.json).toMatchObject({ rid: 'e1', error: 'expired_token' });
  });

  it('a device that reconnects gets its result with req/status', async () => {
    const first = await device(gw, 'tv-relay-4');
    const p = (await first.ask('authorize', { rid: 's1' }, { status: 'pending' })).json!;
    await first.end();
    await approveDeviceCode(String(p.verification_uri), String(p.user_code));
    // wait until the gateway has the result (it was pushed to nobody)
    await waitFor(
      async () => (await gw.store.get('tv-relay-4', 's1'))?.flow.state === 'authorized',
      10_000,
      'result',
    );
    const second = await device(gw, 'tv-relay-4');
    const r = await second.ask('status', { rid: 's1' }, { status: 'authorized' });
    expect((await userinfo(idp, String(r.json!.access_token))).status).toBe(200);
  });

  it('cancel ends a pending flow', async () => {
    const tv = await device(gw, 'tv-relay-5');
    await tv.ask('authorize', { rid: 'c1' }, { status: 'pending' });
    const r = await tv.ask('cancel', { rid: 'c1' }, { status: 'error' });
    expect(r.json).toMatchObject({ error: 'access_denied' });
    const s = await tv.ask('status', { rid: 'c1' }, { status: 'error' });
    expect(s.json).toMatchObject({ error: 'access_denied' });
  });

  it('with a device key the token travels as JWE only the device can open', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ECDH-ES', { crv: 'P-256', extractable: true });
    const jwk = await exportJWK(publicKey);
    const tv = await device(gw, 'tv-relay-6');
    const p = (await tv.ask('authorize', { rid: 'j1', jwk }, { status: 'pending' })).json!;
    await approveDeviceCode(String(p.verification_uri), String(p.user_code));
    const r = (await tv.waitForReply({ rid: 'j1', status: 'authorized' }, { timeoutMs: 10_000 })).json!;
    expect(r.access_token).toBeUndefined();
    const { plaintext } = await compactDecrypt(String(r.jwe), privateKey);
    const fields = JSON.parse(new TextDecoder().decode(plaintext)) as { access_token: string };
    expect((await userinfo(idp, fields.access_token)).status).toBe(200);
  });

  it('refuses at authorize, naming the rule, a 1024-bit RSA key and a low-order X25519 key: no flow, no upstream call', async () => {
    const tv = await device(gw, 'tv-relay-weak');
    const tokenRequests = idp.stats.tokenRequests;
    const rsa = (await tv.ask('authorize', { rid: 'w1', jwk: WEAK_RSA }, { status: 'error' })).json!;
    expect(rsa).toMatchObject({
      rid: 'w1',
      error: 'invalid_request',
      error_description: 'jwk: RSA keys must be at least 2048 bits',
    });
    const okp = (await tv.ask('authorize', { rid: 'w2', jwk: LOW_ORDER_X25519 }, { status: 'error' })).json!;
    expect(okp).toMatchObject({
      rid: 'w2',
      error: 'invalid_request',
      error_description: 'jwk: X25519 keys must not be low-order points',
    });
    expect(await gw.store.get('tv-relay-weak', 'w1')).toBeUndefined();
    expect(await gw.store.get('tv-relay-weak', 'w2')).toBeUndefined();
    expect(idp.stats.tokenRequests).toBe(tokenRequests);
  });

  it('a key that fails at delivery: exactly one invalid_request reply, the flow failed, nothing left to retry', async () => {
    const tv = await device(gw, 'tv-relay-badkey');
    const p = (await tv.ask('authorize', { rid: 'b1' }, { status: 'pending' })).json!;
    // the flow as an older gateway stored it, with the weak key its check at req/authorize let through
    const current = (await gw.store.get('tv-relay-badkey', 'b1'))!;
    expect(
      await gw.store.update({ ...current.flow, jwk: WEAK_RSA }, current.version, { now: Date.now() }),
    ).toMatchObject({ status: 'ok' });
    await approveDeviceCode(String(p.verification_uri), String(p.user_code));
    const r = (await tv.waitForReply({ rid: 'b1', status: 'error' }, { timeoutMs: 10_000 })).json!;
    expect(r).toMatchObject({ error: 'invalid_request' });
    expect(String(r.error_description)).toMatch(
      /^the device key could not be used .*authorize again with another key$/,
    );
    await waitFor(
      async () => (await gw.store.get('tv-relay-badkey', 'b1'))?.flow.deliveredAt !== undefined,
      5000,
      'delivered',
    );
    const done = (await gw.store.get('tv-relay-badkey', 'b1'))!.flow;
    expect(done.state).toBe('failed');
    // delivered and failed: the scheduler has no reason to visit it again
    expect(dueAt(done, Date.now(), gw.config.leaseMs)).toBeUndefined();
    expect(tv.received.filter((m) => m.json?.rid === 'b1').map((m) => m.json?.status)).toEqual([
      'pending',
      'error',
    ]);
    // req/status answers the same error, not server_error
    const s = (await tv.ask('status', { rid: 'b1' }, { status: 'error' })).json!;
    expect(s).toMatchObject({ error: 'invalid_request', error_description: r.error_description });
  });

  it('req/refresh with a grant kept for a key the gateway no longer encrypts to: invalid_request, the grant dropped unspent', async () => {
    const id = 'tv-relay-refresh-weak';
    const tv = await device(gw, id);
    const p = (
      await tv.ask('authorize', { rid: 'k1', scope: 'openid offline_access' }, { status: 'pending' })
    ).json!;
    await approveDeviceCode(String(p.verification_uri), String(p.user_code));
    await tv.waitForReply({ rid: 'k1', status: 'authorized' }, { timeoutMs: 10_000 });
    // the grant as an older gateway kept it: the same refresh token, bound to the weak key
    const grants = new GrantStore({
      store: gw.store,
      keys: deriveKeys(SECRET),
      ttlSeconds: 3600,
      upstream: gw.upstream.upstream,
      log,
    });
    const grant = (await grants.take(id))!;
    await grants.putBack(id, { ...grant, jwk: WEAK_RSA });

    const refreshes = idp.stats.redemptions.get('refresh_token') ?? 0;
    const r = (await tv.ask('refresh', { rid: 'k2' }, { status: 'error' })).json!;
    expect(r).toMatchObject({
      rid: 'k2',
      error: 'invalid_request',
      error_description:
        'the device key could not be used (jwk: RSA keys must be at least 2048 bits); authorize again with another key',
    });
    expect(idp.stats.redemptions.get('refresh_token') ?? 0).toBe(refreshes);
    const again = (await tv.ask('refresh', { rid: 'k3' }, { status: 'error' })).json!;
    expect(again).toMatchObject({ rid: 'k3', error: 'expired_token' });
  });

  it('req/refresh: the gateway keeps the refresh token (never sent to the device) and mints fresh access tokens', async () => {
    const tv = await device(gw, 'tv-relay-refresh');
    const p = (
      await tv.ask('authorize', { rid: 'g1', scope: 'openid offline_access' }, { status: 'pending' })
    ).json!;
    await approveDeviceCode(String(p.verification_uri), String(p.user_code));
    const first = (await tv.waitForReply({ rid: 'g1', status: 'authorized' }, { timeoutMs: 10_000 })).json!;
    expect(first.refresh_token).toBeUndefined();
    await tv.request('ack', { rid: 'g1' });

    const r1 = (await tv.ask('refresh', { rid: 'g2' }, { status: 'authorized' })).json!;
    expect(r1.refresh_token).toBeUndefined();
    expect(r1.access_token).not.toBe(first.access_token);
    expect((await userinfo(idp, String(r1.access_token))).status).toBe(200);
    // again: the (possibly rotated) refresh token was put back
    const r2 = (await tv.ask('refresh', { rid: 'g3' }, { status: 'authorized' })).json!;
    expect((await userinfo(idp, String(r2.access_token))).status).toBe(200);
  });

  it('req/refresh without a kept authorization is expired_token', async () => {
    const tv = await device(gw, 'tv-relay-norefresh');
    const r = await tv.ask('refresh', { rid: 'n1' }, { status: 'error' });
    expect(r.json).toMatchObject({ rid: 'n1', error: 'expired_token' });
  });

  it('a scope outside the allowed list is refused with invalid_scope', async () => {
    const tv = await device(gw, 'tv-relay-7');
    const r = await tv.ask('authorize', { rid: 'x1', scope: 'openid admin' }, { status: 'error' });
    expect(r.json).toMatchObject({ rid: 'x1', error: 'invalid_scope' });
  });
});

describe('relay mode with the mosquitto command-line clients as the device (MQTT 3.1.1)', () => {
  /** Runs a mosquitto client to completion; resolves with its stdout. */
  function run(cmd: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.on('exit', (code) =>
        code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err}`)),
      );
    });
  }

  it('mosquitto_rr asks, the person approves, the pushed token waits in the persistent session for mosquitto_sub', async () => {
    const id = 'tv-cli-1';
    const common = ['-h', '127.0.0.1', '-p', new URL(gw.mqttUrl).port, '-V', 'mqttv311', '-i', id, '-u', id];
    const auth = [...common, '-P', devicePassword(KEY, id), '-q', '1', '-c'];
    const res = `devicegate/v1/${id}/res`;

    // one request/response: subscribes to res (persistent session), publishes the request, prints the reply
    const pendingOut = await run('mosquitto_rr', [
      ...auth,
      '-t',
      `devicegate/v1/${id}/req/authorize`,
      '-e',
      res,
      '-m',
      JSON.stringify({ rid: 'cli1' }),
      '-W',
      '10',
    ]);
    const pending = JSON.parse(pendingOut.trim()) as Record<string, string>;
    expect(pending).toMatchObject({ rid: 'cli1', status: 'pending' });

    // the device is offline while the person approves; the gateway pushes into its session
    await approveDeviceCode(pending.verification_uri!, pending.user_code!);
    await waitFor(
      async () => (await gw.store.get(id, 'cli1'))?.flow.deliveredAt !== undefined,
      10_000,
      'push',
    );

    const authorizedOut = await run('mosquitto_sub', [...auth, '-t', res, '-C', '1', '-W', '10']);
    const authorized = JSON.parse(authorizedOut.trim()) as Record<string, string>;
    expect(authorized).toMatchObject({ rid: 'cli1', status: 'authorized' });
    expect((await userinfo(idp, authorized.access_token!)).status).toBe(200);

    await run('mosquitto_pub', [
      ...auth,
      '-t',
      `devicegate/v1/${id}/req/ack`,
      '-m',
      JSON.stringify({ rid: 'cli1' }),
    ]);
    await waitFor(async () => (await gw.store.get(id, 'cli1'))?.flow.state === 'acked', 5000, 'ack');
  });

  it('a wrong password is refused', async () => {
    const id = 'tv-cli-2';
    await expect(
      run('mosquitto_pub', [
        '-h',
        '127.0.0.1',
        '-p',
        new URL(gw.mqttUrl).port,
        '-V',
        'mqttv311',
        '-i',
        id,
        '-u',
        id,
        '-P',
        'wrong',
        '-t',
        `devicegate/v1/${id}/req/authorize`,
        '-m',
        '{"rid":"x"}',
      ]),
    ).rejects.toThrow(/exited/);
  });
});

describe('relay mode on Redis: polls live in the store, so a restarted gateway resumes them', () => {
  it('a flow started before a restart completes after it', async () => {
    const redis = await startRedis();
    const mqttPort = await freePort();
    const env = {
      DEVICEGATE_REDIS_URL: redis.url,
      DEVICEGATE_REDIS_KEY_PREFIX: 'dg-restart:',
      DEVICEGATE_MQTT_PORT: String(mqttPort),
    };
    const first = await gateway(idp, env);
    let second: Gateway | undefined;
    try {
      const tv = await device(first, 'tv-restart');
      const p = (await tv.ask('authorize', { rid: 'rs1' }, { status: 'pending' })).json!;
      await tv.end();
      await first.close();

      // the person approves while no gateway runs; a new one (same Redis, same secret) picks the poll up
      await approveDeviceCode(String(p.verification_uri), String(p.user_code));
      second = await gateway(idp, env);
      await waitFor(
        async () => (await second!.store.get('tv-restart', 'rs1'))?.flow.state === 'authorized',
        10_000,
        'the resumed poll',
      );
      const again = await device(second, 'tv-restart');
      const r = await again.ask('status', { rid: 'rs1' }, { status: 'authorized' });
      expect((await userinfo(idp, String(r.json!.access_token))).status).toBe(200);
    } finally {
      await second?.close();
      await first.close();
      await redis.stop();
    }
  });
});

describe('relay mode: a grant belongs to the authorization that made it', () => {
  it('a newer authorization without offline_access replaces the kept grant: req/refresh mints nothing from the first one, which is revoked', async () => {
    const id = 'tv-relay-succession';
    const tv = await device(gw, id);
    // person A, with offline_access: a grant is kept
    const a = (
      await tv.ask('authorize', { rid: 'pa', scope: 'openid offline_access' }, { status: 'pending' })
    ).json!;
    await approveDeviceCode(String(a.verification_uri), String(a.user_code));
    await tv.waitForReply({ rid: 'pa', status: 'authorized' }, { timeoutMs: 10_000 });
    await tv.request('ack', { rid: 'pa' });
    const first = await keptRefreshToken(gw.store, SECRET, id);
    expect((await introspect(idp, first)).active).toBe(true);

    // person B, without offline_access
    const b = (await tv.ask('authorize', { rid: 'pb', scope: 'openid' }, { status: 'pending' })).json!;
    await approveDeviceCode(String(b.verification_uri), String(b.user_code));
    await tv.waitForReply({ rid: 'pb', status: 'authorized' }, { timeoutMs: 10_000 });

    const r = await tv.ask('refresh', { rid: 'pr' }, { status: 'error' });
    expect(r.json).toMatchObject({ rid: 'pr', error: 'expired_token' });
    await waitFor(
      async () => !(await introspect(idp, first)).active,
      5000,
      'the revocation of the first grant',
    );
  });

  it('a refused refresh token that came from a rotation drops the grant and writes the audit line (possible theft)', async () => {
    const rotating = await startDemoIdp({
      host: '127.0.0.1',
      port: 0,
      redirectUris: [],
      deviceFlow: true,
      log,
      rotateRefreshTokens: true,
    });
    const lines: Array<Record<string, unknown>> = [];
    const audited = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
    const g = await gateway(rotating, {}, audited);
    try {
      const id = 'tv-relay-theft';
      const tv = await device(g, id);
      const p = (
        await tv.ask('authorize', { rid: 't1', scope: 'openid offline_access' }, { status: 'pending' })
      ).json!;
      await approveDeviceCode(String(p.verification_uri), String(p.user_code));
      await tv.waitForReply({ rid: 't1', status: 'authorized' }, { timeoutMs: 10_000 });
      await tv.ask('refresh', { rid: 't2' }, { status: 'authorized' }); // the upstream rotates

      // a thief redeems the rotated refresh token first
      const stolen = await keptRefreshToken(g.store, SECRET, id);
      const theft = await fetch(`${rotating.issuer}/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${btoa(`${rotating.clientId}:${rotating.clientSecret}`)}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: stolen }).toString(),
      });
      expect(theft.status).toBe(200);

      const r = await tv.ask('refresh', { rid: 't3' }, { status: 'error' });
      expect(r.json).toMatchObject({ rid: 't3', error: 'expired_token' });
      expect(lines).toContainEqual(
        expect.objectContaining({ event: 'grant.revoked', reason: 'rotated_token_refused', deviceId: id }),
      );
      expect(JSON.stringify(lines)).not.toContain(stolen);
      const again = await tv.ask('refresh', { rid: 't4' }, { status: 'error' });
      expect(again.json).toMatchObject({ error: 'expired_token', error_description: /no authorization/ });
    } finally {
      await g.close();
      await rotating.close();
    }
  });
});

describe('relay mode: the per-device cap is checked before the upstream is asked', () => {
  it('30 concurrent authorize requests of one device cost at most the cap of upstream device authorizations', async () => {
    let deviceAuthorizations = 0;
    const counted = await startDemoIdp({
      host: '127.0.0.1',
      port: 0,
      redirectUris: [],
      deviceFlow: true,
      log,
      intercept: (req, _res, next) => {
        if (req.method === 'POST' && req.url?.startsWith('/device/auth') === true) deviceAuthorizations++;
        next();
      },
    });
    // the throttle off, so that every request reaches the cap
    const g = await gateway(counted, { DEVICEGATE_DEVICE_RATE: '0', DEVICEGATE_MAX_FLOWS_PER_DEVICE: '3' });
    try {
      const tv = await device(g, 'tv-cap');
      const rids = Array.from({ length: 30 }, (_, i) => `cap${i}`);
      await Promise.all(rids.map((rid) => tv.request('authorize', { rid })));
      const replies = await Promise.all(rids.map((rid) => tv.waitForReply({ rid }, { timeoutMs: 15_000 })));
      const pending = replies.filter((r) => r.json?.status === 'pending');
      expect(pending).toHaveLength(3);
      for (const r of replies) {
        if (r.json?.status !== 'pending') expect(r.json).toMatchObject({ error: 'slow_down' });
      }
      // one instance: live flows plus the starts in flight never pass the cap, so exactly the cap here
      expect(deviceAuthorizations).toBe(3);
    } finally {
      await g.close();
      await counted.close();
    }
  });
});

describe('a device that floods the gateway', () => {
  it('is answered slow_down with retry_after once past its burst (once per window), and other devices are unaffected', async () => {
    const flood = await device(gw, 'tv-flood');
    for (let i = 0; i < 12; i++) await flood.request('status', { rid: `f${i}` });
    const r = await flood.waitForReply({ status: 'error', rid: 'f10' });
    expect(r.json).toMatchObject({ error: 'slow_down', retry_after: expect.any(Number) });
    // f11 came within the same window: dropped unanswered, and counted
    await waitFor(
      async () => (await gw.metrics.value('devicegate_requests_dropped_total', { reason: 'throttled' })) >= 1,
      5000,
      'the second refusal to be dropped',
    );
    expect(flood.received.filter((m) => m.json?.['rid'] === 'f11')).toEqual([]);
    const calm = await device(gw, 'tv-calm');
    expect((await calm.ask('status', { rid: 'z' }, { status: 'error' })).json).toMatchObject({
      error: 'expired_token',
    });
  });
});

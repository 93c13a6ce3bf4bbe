/**
 * The operations port and the admin API, through the gateway the config builds (`buildGateway`, nothing started,
 * fastify `inject`): which routes live on which port, the bearer check, the revocation routes and their audit lines,
 * and the configuration rules around them.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCommand } from '../../src/cli/commands.ts';
import { ConfigError, loadConfig } from '../../src/config/index.ts';
import { secretMatches } from '../../src/core/crypto.ts';
import { buildGateway } from '../../src/gateway/index.ts';
import { createLogger } from '../../src/observability/log.ts';

const TOKEN = 'admin-token-0123456789-0123456789-abc';
const UPSTREAM = {
  DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
  DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
};

function build(env: Record<string, string>) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  const gateway = buildGateway(loadConfig({ ...UPSTREAM, ...env }), { log: createLogger('info', sink) });
  return { gateway, lines };
}

function adminOf(g: ReturnType<typeof build>['gateway']) {
  const app = g.adminApp;
  if (app === undefined) throw new Error('no operations port');
  return app;
}

describe('secretMatches (the admin token check)', () => {
  it('accepts only the exact secret, whatever the lengths', () => {
    expect(secretMatches(TOKEN, TOKEN)).toBe(true);
    expect(secretMatches(`${TOKEN}x`, TOKEN)).toBe(false);
    expect(secretMatches(TOKEN.slice(0, -1), TOKEN)).toBe(false);
    expect(secretMatches(TOKEN.replace(/.$/, 'x'), TOKEN)).toBe(false);
    expect(secretMatches('', TOKEN)).toBe(false);
  });
});

describe('the operations port', () => {
  it('unset: /metrics and /readyz stay on the public port, and there is no admin app', async () => {
    const { gateway } = build({});
    expect(gateway.adminApp).toBeUndefined();
    expect((await gateway.app.inject({ url: '/metrics' })).statusCode).toBe(200);
    expect((await gateway.app.inject({ url: '/readyz' })).statusCode).not.toBe(404);
  });

  it('set: /metrics and /readyz move there, /healthz is on both; no token means no admin API (404)', async () => {
    const { gateway } = build({ DEVICEGATE_ADMIN_PORT: '0' });
    const admin = adminOf(gateway);
    for (const url of ['/metrics', '/readyz']) {
      expect((await gateway.app.inject({ url })).statusCode).toBe(404);
      expect((await admin.inject({ url })).statusCode).not.toBe(404);
    }
    expect((await gateway.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await admin.inject({ url: '/healthz' })).statusCode).toBe(200);
    const list = await admin.inject({
      url: '/admin/devices/revoked',
      headers: { authorization: 'Bearer x' },
    });
    expect(list.statusCode).toBe(404);
  });

  it('the admin API answers 401 without the right bearer token, and is never on the public port', async () => {
    const { gateway } = build({ DEVICEGATE_ADMIN_PORT: '0', DEVICEGATE_ADMIN_TOKEN: TOKEN });
    const admin = adminOf(gateway);
    for (const authorization of [undefined, `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN, 'Bearer ']) {
      const res = await admin.inject({
        method: 'POST',
        url: '/admin/devices/tv-1/revoke',
        ...(authorization !== undefined && { headers: { authorization } }),
      });
      expect(res.statusCode).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer');
    }
    expect(await gateway.store.isRevoked('tv-1')).toBe(false);
    const pub = await gateway.app.inject({
      method: 'POST',
      url: '/admin/devices/tv-1/revoke',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(pub.statusCode).toBe(404);
  });

  it('revoke, list and restore a device, each with its audit line', async () => {
    const { gateway, lines } = build({ DEVICEGATE_ADMIN_PORT: '0', DEVICEGATE_ADMIN_TOKEN: TOKEN });
    const admin = adminOf(gateway);
    const call = async (method: 'GET' | 'POST', url: string) => {
      const res = await admin.inject({ method, url, headers: { authorization: `bearer ${TOKEN}` } });
      return { status: res.statusCode, body: res.json<unknown>() };
    };
    expect(await call('POST', '/admin/devices/tv-1/revoke')).toEqual({
      status: 200,
      body: { deviceId: 'tv-1', revoked: true, changed: true },
    });
    expect((await call('POST', '/admin/devices/tv-1/revoke')).body).toMatchObject({ changed: false });
    expect(await call('GET', '/admin/devices/revoked')).toEqual({ status: 200, body: { devices: ['tv-1'] } });
    expect(await gateway.store.isRevoked('tv-1')).toBe(true);
    expect(await call('POST', '/admin/devices/tv-1/restore')).toEqual({
      status: 200,
      body: { deviceId: 'tv-1', revoked: false, changed: true },
    });
    expect((await call('POST', '/admin/devices/tv%201/revoke')).status).toBe(400);
    expect(lines.filter((l) => typeof l.event === 'string').map((l) => [l.event, l.deviceId])).toEqual([
      ['device.revoked', 'tv-1'],
      ['device.revoked', 'tv-1'],
      ['device.restored', 'tv-1'],
    ]);
    expect(JSON.stringify(lines)).not.toContain(TOKEN);
  });
});

describe('the operations port in the configuration', () => {
  it('a token without the port, and the port equal to the public one, are refused', () => {
    expect(() => loadConfig({ DEVICEGATE_ADMIN_TOKEN: TOKEN })).toThrow(
      'DEVICEGATE_ADMIN_TOKEN: the admin API lives on the operations port; set DEVICEGATE_ADMIN_PORT',
    );
    expect(() => loadConfig({ DEVICEGATE_ADMIN_PORT: '8080' })).toThrow(ConfigError);
    expect(() => loadConfig({ DEVICEGATE_ADMIN_PORT: '9090', DEVICEGATE_ADMIN_TOKEN: 'short' })).toThrow(
      'DEVICEGATE_ADMIN_TOKEN: must be at least 32 characters',
    );
  });

  it('config check and the start-up log warn about a token on a non-loopback operations port', () => {
    const env = {
      DEVICEGATE_ADMIN_PORT: '9090',
      DEVICEGATE_ADMIN_TOKEN: TOKEN,
      DEVICEGATE_ADMIN_HOST: '0.0.0.0',
    };
    const warning = 'DEVICEGATE_ADMIN_HOST is 0.0.0.0: the admin token crosses the network in plain HTTP';
    expect(runCommand(['config', 'check'], env)?.out).toContain(`warning: ${warning}`);
    expect(build(env).lines.map((l) => l.msg)).toContainEqual(expect.stringContaining(warning));
    expect(
      runCommand(['config', 'check'], { ...env, DEVICEGATE_ADMIN_HOST: '127.0.0.1' })?.out,
    ).not.toContain('warning');
  });
});

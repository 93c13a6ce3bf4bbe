/** `devicegate …` subcommands, run as `src/main.ts` runs them (`runCommand`), without a process. */
import { describe, expect, it } from 'vitest';
import { USAGE, runCli, runCommand } from '../../src/cli/commands.ts';
import { DEVICES_USAGE } from '../../src/cli/devices.ts';
import { devicePassword } from '../../src/core/crypto.ts';
import { VERSION } from '../../src/version.ts';

describe('devicegate', () => {
  it('with no command runs the gateway', () => {
    expect(runCommand([], {})).toBeUndefined();
  });

  it('--help lists every subcommand; an unknown command prints it and exits 2', () => {
    for (const word of ['config check', 'credentials', '--version', '--help']) expect(USAGE).toContain(word);
    expect(runCommand(['--help'], {})).toEqual({ out: USAGE, code: 0 });
    expect(runCommand(['frobnicate'], {})).toEqual({ out: USAGE, code: 2 });
    expect(runCommand(['config'], {})).toEqual({ out: USAGE, code: 2 });
  });

  it('--version prints the package version', () => {
    expect(runCommand(['--version'], {})).toEqual({ out: `devicegate ${VERSION}\n`, code: 0 });
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('config check summarises a valid configuration without printing secrets', () => {
    const r = runCommand(['config', 'check'], {
      DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
      DEVICEGATE_UPSTREAM_CLIENT_SECRET: 'client-secret-value',
      DEVICEGATE_MQTT_URL: 'mqtts://gw:broker-password@broker.example',
      DEVICEGATE_REDIS_URL: 'rediss://:redis-password@redis.example',
      DEVICEGATE_SECRET: 's'.repeat(32),
    });
    expect(r?.code).toBe(0);
    expect(r?.out).toContain('configuration OK');
    expect(r?.out).toContain('relay');
    // where the gateway connects, with the credentials redacted
    expect(r?.out).toContain('mqtts://***@broker.example');
    expect(r?.out).toContain('rediss://***@redis.example');
    for (const secret of ['client-secret-value', 'broker-password', 'redis-password', 's'.repeat(32)]) {
      expect(r?.out).not.toContain(secret);
    }
  });

  it('config check prints every problem at once and exits 2', () => {
    const r = runCommand(['config', 'check'], {
      NODE_ENV: 'production',
      DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
      DEVICEGATE_SURPRISE: '1',
    });
    expect(r?.code).toBe(2);
    expect(r?.out).toContain('DEVICEGATE_SURPRISE: unknown variable');
  });

  it('devices: usage errors, bad ids and the memory store are refused with exit 2 (test/integration/revocation.test.ts runs it on Redis)', async () => {
    for (const args of [
      ['devices'],
      ['devices', 'revoke'],
      ['devices', 'ban', 'tv-1'],
      ['devices', 'list-revoked', 'x'],
    ]) {
      expect(await runCli(args, {})).toEqual({ out: DEVICES_USAGE, code: 2 });
    }
    expect(await runCli(['devices', 'revoke', 'tv 1'], {})).toEqual({
      out: 'invalid device id(s): tv 1\n',
      code: 2,
    });
    const memory = await runCli(['devices', 'revoke', 'tv-1'], {});
    expect(memory?.code).toBe(2);
    expect(memory?.out).toContain('DEVICEGATE_REDIS_URL is unset');
    expect(USAGE).toContain('devices revoke|restore');
  });

  it('credentials during a rotation: the new key’s passwords, and a note saying so', () => {
    const env = { DEVICEGATE_DEVICE_KEY: 'n'.repeat(16), DEVICEGATE_DEVICE_KEY_PREVIOUS: 'o'.repeat(16) };
    const out = runCommand(['credentials', 'tv-1'], env)?.out ?? '';
    expect(out).toContain('# a fleet-key rotation is under way');
    expect(out).toContain(`password=${devicePassword('n'.repeat(16), 'tv-1')}`);
  });
});

/**
 * `npm test`'s preflight (scripts/preflight.ts): which tools are missing, and what it does about them — nothing, the
 * apt commands (as root, or with passwordless sudo), or one line naming the command to run.
 */
import { describe, expect, it } from 'vitest';
import { type Check, type Machine, TOOLS, missingTools, plan } from '../../scripts/preflight.ts';

const ROOT: Machine = { apt: true, root: true, sudo: false };
const SUDO: Machine = { apt: true, root: false, sudo: true };
const USER: Machine = { apt: true, root: false, sudo: false };

/** A machine where everything is present except what `absent` names. */
function without(...absent: string[]): (check: Check) => boolean {
  return (c) => !absent.includes(c.kind === 'command' ? c.name : c.kind === 'file' ? c.path : c.module);
}

describe('preflight', () => {
  it('does nothing when every tool is there', () => {
    expect(missingTools(without())).toEqual([]);
    expect(plan(missingTools(without()), USER)).toEqual({ action: 'none' });
  });

  it('maps what is missing to the Debian packages that bring it', () => {
    const missing = missingTools(
      without('mosquitto_pub', '/usr/bin/chromium', 'paho.mqtt', '/usr/include/mosquitto.h'),
    );
    expect(missing.map((t) => t.apt)).toEqual([
      'mosquitto-clients',
      'chromium',
      'python3-paho-mqtt',
      'libmosquitto-dev',
    ]);
  });

  it('as root: apt-get update, then one non-interactive install of exactly the missing packages', () => {
    expect(plan(missingTools(without('redis-server', 'gcc')), ROOT)).toEqual({
      action: 'install',
      packages: ['redis-server', 'gcc'],
      argv: [
        ['apt-get', 'update', '-qq'],
        [
          'env',
          'DEBIAN_FRONTEND=noninteractive',
          'apt-get',
          'install',
          '-y',
          '-qq',
          '--no-install-recommends',
          'redis-server',
          'gcc',
        ],
      ],
    });
  });

  it('with passwordless sudo: the same through sudo -n (never a password prompt)', () => {
    const p = plan(missingTools(without('glewlwyd')), SUDO);
    expect(p.action === 'install' && p.argv.every((argv) => argv[0] === 'sudo' && argv[1] === '-n')).toBe(
      true,
    );
  });

  it('without root or sudo: stops with one line that names the command to run', () => {
    const p = plan(missingTools(without('redis-server', '/usr/sbin/nats-server')), USER);
    expect(p).toEqual({
      action: 'stop',
      line: 'npm test needs redis-server, nats-server: run  sudo apt-get update && sudo apt-get install -y -qq --no-install-recommends redis-server nats-server  and then npm test again',
    });
    expect(p.action === 'stop' && p.line.includes('\n')).toBe(false);
  });

  it('without apt: stops with one line naming the packages', () => {
    const p = plan(missingTools(without('openssl')), { apt: false, root: true, sudo: false });
    expect(p).toMatchObject({
      action: 'stop',
      line: expect.stringMatching(/^npm test needs these system packages \(Debian names\): openssl — /),
    });
  });

  it('names each package once even when two checks need it', () => {
    const twice = [
      ...TOOLS,
      { apt: 'redis-server', check: { kind: 'command', name: 'redis-cli' }, for: 'x' } as const,
    ];
    const p = plan(missingTools(without('redis-server', 'redis-cli'), twice), ROOT);
    expect(p.action === 'install' && p.packages).toEqual(['redis-server']);
  });
});

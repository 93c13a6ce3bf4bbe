/**
 * `npm test`'s preflight (the `pretest` script): the suite runs real brokers, Redis, identity providers, a browser
 * and device examples, so before any test starts this checks for every system tool it needs. What is missing is
 * installed with apt when that can happen without a question (root, or passwordless sudo); otherwise the run stops at
 * once with one line naming the command to run — never a wall of failing tests. `.ci/run` relies on it too.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** How to tell that a tool is there. */
export type Check =
  { kind: 'command'; name: string } | { kind: 'file'; path: string } | { kind: 'python'; module: string };

export interface Tool {
  /** the Debian package that brings it */
  apt: string;
  check: Check;
}

/** Every system tool the suite needs (the Debian bookworm package names). */
export const TOOLS: readonly Tool[] = [
  { apt: 'redis-server', check: { kind: 'command', name: 'redis-server' } },
  { apt: 'mosquitto', check: { kind: 'command', name: 'mosquitto' } },
  { apt: 'mosquitto-clients', check: { kind: 'command', name: 'mosquitto_pub' } },
  { apt: 'chromium', check: { kind: 'file', path: '/usr/bin/chromium' } },
  { apt: 'glewlwyd', check: { kind: 'command', name: 'glewlwyd' } },
  {
    apt: 'nats-server',
    check: { kind: 'file', path: '/usr/sbin/nats-server' },
  },
  {
    apt: 'rabbitmq-server',
    check: { kind: 'file', path: '/usr/lib/rabbitmq/bin/rabbitmq-server' },
  },
  { apt: 'python3-paho-mqtt', check: { kind: 'python', module: 'paho.mqtt' } },
  { apt: 'openssl', check: { kind: 'command', name: 'openssl' } },
  // the C device example (examples/c) is built with its Makefile by test/integration/c-device.test.ts
  { apt: 'gcc', check: { kind: 'command', name: 'gcc' } },
  { apt: 'make', check: { kind: 'command', name: 'make' } },
  { apt: 'libmosquitto-dev', check: { kind: 'file', path: '/usr/include/mosquitto.h' } },
  {
    apt: 'docker-compose',
    check: { kind: 'command', name: 'docker-compose' },
  },
];

/** What the machine lets the preflight do. */
export interface Machine {
  /** `apt-get` is there (a Debian or Ubuntu machine) */
  apt: boolean;
  /** running as root */
  root: boolean;
  /** `sudo -n true` succeeds */
  sudo: boolean;
}

export type Plan =
  | { action: 'none' }
  | { action: 'install'; argv: string[][]; packages: string[] }
  | { action: 'stop'; line: string };

const APT_INSTALL = ['apt-get', 'install', '-y', '-qq', '--no-install-recommends'];

/** The decision: nothing to do, the apt commands to run, or the one line to stop with. */
export function plan(missing: readonly Tool[], machine: Machine): Plan {
  if (missing.length === 0) return { action: 'none' };
  const packages = [...new Set(missing.map((t) => t.apt))];
  if (!machine.apt) {
    return {
      action: 'stop',
      line: `npm test needs these system packages (Debian names): ${packages.join(' ')} — install them, then run npm test again`,
    };
  }
  if (!machine.root && !machine.sudo) {
    return {
      action: 'stop',
      line: `npm test needs ${packages.join(', ')}: run  sudo apt-get update && sudo ${[...APT_INSTALL, ...packages].join(' ')}  and then npm test again`,
    };
  }
  const sudo = machine.root ? [] : ['sudo', '-n'];
  return {
    action: 'install',
    packages,
    argv: [
      [...sudo, 'apt-get', 'update', '-qq'],
      [...sudo, 'env', 'DEBIAN_FRONTEND=noninteractive', ...APT_INSTALL, ...packages],
    ],
  };
}

/** The tools whose check fails on this machine. */
export function missingTools(present: (check: Check) => boolean, tools: readonly Tool[] = TOOLS): Tool[] {
  return tools.filter((t) => !present(t.check));
}

/** The real checks: PATH (plus the sbin directories, where Debian puts the daemons), files, Debian's python3. */
function present(check: Check): boolean {
  switch (check.kind) {
    case 'file':
      return existsSync(check.path);
    case 'command':
      return searchPath().some((dir) => existsSync(path.join(dir, check.name)));
    case 'python':
      return (
        spawnSync('/usr/bin/python3', ['-c', `import ${check.module}`], { stdio: 'ignore' }).status === 0
      );
  }
}

function searchPath(): string[] {
  return [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/sbin'].filter(Boolean);
}

function machine(): Machine {
  const ok = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
  const root = process.getuid?.() === 0;
  return { apt: ok('apt-get', ['--version']), root, sudo: !root && ok('sudo', ['-n', 'true']) };
}

function main(): number {
  const p = plan(missingTools(present), machine());
  if (p.action === 'none') return 0;
  if (p.action === 'stop') {
    process.stderr.write(`preflight: ${p.line}\n`);
    return 1;
  }
  process.stderr.write(`preflight: installing ${p.packages.join(' ')} with apt\n`);
  for (const argv of p.argv) {
    if (spawnSync(argv[0]!, argv.slice(1), { stdio: 'inherit' }).status !== 0) {
      process.stderr.write(`preflight: \`${argv.join(' ')}\` failed; run it by hand, then npm test again\n`);
      return 1;
    }
  }
  const still = missingTools(present).map((t) => t.apt);
  if (still.length === 0) return 0;
  process.stderr.write(`preflight: still missing after apt: ${still.join(' ')}\n`);
  return 1;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main();
}

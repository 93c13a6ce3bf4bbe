/**
 * Real processes for tests: a private redis-server or mosquitto on a free loopback port, stopped by PID. The
 * machine's shared Redis (6379) and Mosquitto (1883) are never touched.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A port that is free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port')),
      );
    });
  });
}

/** Resolves once a TCP connect to the port succeeds; rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls `check` until it returns a value other than undefined/false; rejects after `timeoutMs`. */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface ManagedProcess {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  readonly dir: string;
  /** SIGKILL (default) or SIGTERM, then wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the same process again on the same port and directory (after stop). */
  restart(): Promise<void>;
}

async function managed(
  name: string,
  port: number,
  dir: string,
  start: () => ChildProcess,
  url: string,
  startupMs = 10_000,
): Promise<ManagedProcess> {
  let child = start();
  let exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForPort(port, startupMs);
  const handle: ManagedProcess = {
    port,
    url,
    dir,
    get pid() {
      return child.pid ?? -1;
    },
    async stop(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
    async restart() {
      await handle.stop();
      child = start();
      exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      await waitForPort(port);
    },
  };
  processes.add({ name, handle });
  return handle;
}

const processes = new Set<{ name: string; handle: ManagedProcess }>();

/** Stops every process these helpers started (call from afterAll). */
export async function stopAll(): Promise<void> {
  await Promise.allSettled([...processes].map((p) => p.handle.stop()));
  processes.clear();
}

/**
 * A private redis-server on a free port. `appendonly: true` turns on AOF (everysec) in its own directory; `args` are
 * appended to its command line (e.g. `['--maxmemory-policy', 'allkeys-lru']`).
 */
export async function startRedis(
  opts: { appendonly?: boolean; args?: readonly string[] } = {},
): Promise<ManagedProcess> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    opts.appendonly ? 'yes' : 'no',
    '--appendfsync',
    'everysec',
    '--daemonize',
    'no',
    '--logfile',
    path.join(dir, 'redis.log'),
    ...(opts.args ?? []),
  ];
  const h = await managed(
    'redis',
    port,
    dir,
    () => spawn('redis-server', args, { stdio: 'ignore' }),
    `redis://127.0.0.1:${port}`,
  );
  const stop = h.stop;
  return Object.assign(h, {
    async stop(signal?: NodeJS.Signals) {
      await stop(signal);
    },
  });
}

/**
 * A private Redis Sentinel on a free port watching `master` (a redis-server on 127.0.0.1) under `name`, with a quorum
 * of one. Sentinel rewrites its config file, so it gets one of its own in a temp directory.
 */
export async function startSentinel(master: ManagedProcess, name: string): Promise<ManagedProcess> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-sentinel-'));
  const conf = path.join(dir, 'sentinel.conf');
  const lines = [
    `port ${port}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    `logfile ${path.join(dir, 'sentinel.log')}`,
    `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
  ];
  await writeFile(conf, `${lines.join('\n')}\n`);
  return managed(
    'sentinel',
    port,
    dir,
    () => spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' }),
    `redis+sentinel://127.0.0.1:${port}/${name}`,
  );
}

/**
 * A private mosquitto on a free port. `config` lines are appended to a minimal config (listener, no persistence
 * unless `persistence: true` — then in its own directory, kept across `restart()` — and TCP_NODELAY); pass `files` to
 * write ACL / password files into its directory first (use `{dir}` in config lines).
 */
export async function startMosquitto(
  opts: { config?: string[]; files?: Record<string, string>; persistence?: boolean } = {},
): Promise<ManagedProcess> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-mosq-'));
  for (const [name, content] of Object.entries(opts.files ?? {})) {
    await writeFile(path.join(dir, name), content, { mode: 0o600 });
  }
  const lines = [
    `listener ${port} 127.0.0.1`,
    ...(opts.persistence === true
      ? ['persistence true', 'persistence_location {dir}/']
      : ['persistence false']),
    'set_tcp_nodelay true',
    ...(opts.config ?? ['allow_anonymous true']),
  ].map((l) => l.replaceAll('{dir}', dir));
  const conf = path.join(dir, 'mosquitto.conf');
  await writeFile(conf, `${lines.join('\n')}\n`);
  return managed(
    'mosquitto',
    port,
    dir,
    () => spawn('mosquitto', ['-c', conf], { stdio: 'ignore' }),
    `mqtt://127.0.0.1:${port}`,
  );
}

/**
 * A private nats-server 2.9 with its MQTT listener on a free port (MQTT needs JetStream, and JetStream a
 * `server_name` and a `store_dir`: both in its own temp directory). `url` is the MQTT listener.
 */
export async function startNats(): Promise<ManagedProcess> {
  const [port, clientPort] = [await freePort(), await freePort()];
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-nats-'));
  const conf = path.join(dir, 'nats.conf');
  await writeFile(
    conf,
    [
      `listen: 127.0.0.1:${clientPort}`,
      `server_name: dg-test-${port}`,
      `jetstream { store_dir: "${path.join(dir, 'js')}", max_memory_store: 67108864, max_file_store: 268435456 }`,
      `mqtt { listen: 127.0.0.1:${port} }`,
      '',
    ].join('\n'),
  );
  return managed(
    'nats',
    port,
    dir,
    () => spawn('/usr/sbin/nats-server', ['-c', conf], { stdio: 'ignore' }),
    `mqtt://127.0.0.1:${port}`,
  );
}

/**
 * A private RabbitMQ 3.10 node with `rabbitmq_mqtt` (anonymous MQTT allowed) beside the machine's own node: its own
 * node name, AMQP, distribution and MQTT ports, and mnesia, log, config and plugins files in a temp directory. It runs
 * `/usr/lib/rabbitmq/bin/rabbitmq-server` directly: as root, `/usr/sbin/rabbitmq-server` (a wrapper) switches to the
 * `rabbitmq` user with that user's HOME, whose `.erlang.cookie` is the machine node's; here HOME is the temp directory,
 * so Erlang makes a fresh cookie. The script stays the parent of `beam.smp`, so the whole process group is stopped
 * (by the script's PID; `restart()` is not supported). Starting takes 10–25 s.
 */
export async function startRabbitMq(): Promise<ManagedProcess> {
  const [port, amqpPort, distPort] = [await freePort(), await freePort(), await freePort()];
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-rabbit-'));
  await writeFile(
    path.join(dir, 'rabbitmq.conf'),
    [
      `listeners.tcp.default = 127.0.0.1:${amqpPort}`,
      `mqtt.listeners.tcp.default = 127.0.0.1:${port}`,
      'mqtt.allow_anonymous = true',
      '',
    ].join('\n'),
  );
  await writeFile(path.join(dir, 'enabled_plugins'), '[rabbitmq_mqtt].\n');
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    RABBITMQ_HOME: '/usr/lib/rabbitmq',
    RABBITMQ_NODENAME: `dg-test-${port}@localhost`,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq'),
    RABBITMQ_ADVANCED_CONFIG_FILE: path.join(dir, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: path.join(dir, 'rabbitmq.pid'),
  };
  const h = await managed(
    'rabbitmq',
    port,
    dir,
    () =>
      spawn('/usr/lib/rabbitmq/bin/rabbitmq-server', [], { env, cwd: dir, stdio: 'ignore', detached: true }),
    `mqtt://127.0.0.1:${port}`,
    60_000,
  );
  const pid = h.pid;
  return Object.assign(h, {
    async stop() {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await waitFor(
        () => {
          try {
            process.kill(-pid, 0);
            return false;
          } catch {
            return true;
          }
        },
        10_000,
        'rabbitmq to exit',
      );
    },
  });
}

/** Removes a temp directory made by these helpers. */
export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

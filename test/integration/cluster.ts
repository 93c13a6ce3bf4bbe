/**
 * The pieces of a scale-out deployment, for the external-broker, Mosquitto ACL, scale-out and failure tests:
 * - a private Mosquitto configured from the shipped files (deploy/mosquitto/mosquitto.conf, acl, and a password file
 *   written by deploy/mosquitto/make-passwords.sh), on a free port, logging to a file in its directory;
 * - the demo IdP (relay mode upstream), instrumented: every token request is recorded with its arrival time, its
 *   device_code and its outcome, and a test can hold the next token request (the gateway that sent it then holds
 *   the flow's lease) and have it dropped unprocessed if its sender died meanwhile;
 * - the environment of a gateway instance in external-broker relay mode.
 * Not a test file: the suites import it.
 */
import { execFile } from 'node:child_process';
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage } from 'node:http';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { startDemoIdp, type DemoIdp } from '../../src/demo/idp.ts';
import { scripts } from '../../src/store/redis/scripts.ts';
import { devicePassword } from '../../src/core/crypto.ts';
import { createLogger } from '../../src/observability/log.ts';
import type { TestCerts } from '../helpers/certs.ts';
import { freePort, type ManagedProcess, startMosquitto, waitForPort } from '../helpers/procs.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEPLOY_DIR = path.join(REPO, 'deploy', 'mosquitto');
export const PREFIX = 'devicegate/v1';
export const GATEWAY_PASSWORD = 'gateway-test-password-0123456789';

export interface Broker extends ManagedProcess {
  /** the gateway usernames that have a password and an ACL block */
  readonly gatewayUsers: readonly string[];
  /** Mosquitto's log so far (`log_type all` when asked for, else the shipped log types) */
  log(): Promise<string>;
  /** the TLS listener for devices, when `tls` was given (the gateways use the plain one on loopback) */
  readonly tlsPort: number | undefined;
}

export interface BrokerOptions {
  /** fleet key the device passwords are derived from */
  key: string;
  devices: readonly string[];
  /** gateway usernames (default the two of deploy/mosquitto/acl); extra ones get a copy of its gateway ACL block */
  gateways?: readonly string[];
  /** log everything (CONNECT details, DISCONNECT) instead of the shipped error/warning/notice */
  verboseLog?: boolean;
  /** more config lines after the shipped ones (e.g. a TLS listener with the test's own port and certificates) */
  extraConfig?: readonly string[];
  /**
   * devices whose password lines are hashed in-process ({@link hashedPasswordLine}) rather than by
   * make-passwords.sh, which runs openssl per device: for fleets of hundreds
   */
  fleet?: readonly string[];
  /** also listen with TLS (this certificate and key) on a second port, as docker-compose.yml's broker does */
  tls?: TestCerts;
  /** keep sessions and queued messages in a file across `restart()`, as the shipped config does (default off) */
  persistence?: boolean;
}

/** Config keys the test sets itself (its own port, files and log) instead of the shipped values. */
const OVERRIDDEN = new Set([
  'listener',
  'password_file',
  'acl_file',
  'persistence',
  'persistence_location',
  'log_dest',
  'log_type',
  'set_tcp_nodelay',
  'user',
  // the shipped TLS listener's files (tests that want it add their own listener with their own certificates)
  'cafile',
  'certfile',
  'keyfile',
  'tls_version',
]);

/** The shipped mosquitto.conf without the lines the test replaces. */
export async function shippedMosquittoConf(): Promise<string[]> {
  const text = await readFile(path.join(DEPLOY_DIR, 'mosquitto.conf'), 'utf8');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !OVERRIDDEN.has(l.split(/\s+/, 1)[0]!));
}

/** The settings of the shipped `listener 8883` block that belong to that listener (its TLS settings). */
const TLS_LISTENER_KEYS = new Set([
  'cafile',
  'certfile',
  'keyfile',
  'tls_version',
  'require_certificate',
  'use_identity_as_username',
]);

/**
 * The shipped TLS listener with only its port and certificate directory replaced: `listener {port} 127.0.0.1`, its
 * TLS lines with `certDir` (deploy/gen-certs.sh's layout: ca.crt, server.crt, server.key) for /mosquitto/certs, and
 * `use_username_as_clientid` (a setting of each listener).
 */
export async function shippedTlsListener(port: number, certDir: string): Promise<string[]> {
  const text = await readFile(path.join(DEPLOY_DIR, 'mosquitto.conf'), 'utf8');
  const lines = text.split('\n').map((l) => l.trim());
  if (!lines.includes('listener 8883'))
    throw new Error('deploy/mosquitto/mosquitto.conf has no `listener 8883`');
  const tls = lines
    .filter((l) => TLS_LISTENER_KEYS.has(l.split(/\s+/, 1)[0]!))
    .map((l) => l.replaceAll('/mosquitto/certs', certDir));
  const clientId = lines.filter((l) => l.startsWith('use_username_as_clientid'));
  return [`listener ${port} 127.0.0.1`, ...tls, ...clientId];
}

/** The shipped ACL with a copy of its first gateway block for every extra gateway username. */
export async function aclFor(gateways: readonly string[]): Promise<string> {
  const acl = await readFile(path.join(DEPLOY_DIR, 'acl'), 'utf8');
  const block = /^user (\S+)\n((?:topic .*\n)+)/m.exec(acl);
  if (block === null) throw new Error('deploy/mosquitto/acl has no gateway user block');
  const known = new Set([...acl.matchAll(/^user (\S+)$/gm)].map((m) => m[1]));
  const extra = gateways.filter((g) => !known.has(g)).map((g) => `\nuser ${g}\n${block[2]}`);
  return acl + extra.join('');
}

function run(cmd: string, args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: { PATH: process.env.PATH ?? '', ...env } }, (err, stdout, stderr) =>
      err === null ? resolve(stdout) : reject(new Error(`${cmd} failed: ${err.message}\n${stderr}`)),
    );
  });
}

/** The password file `make-passwords.sh` writes for the gateways and devices, as text. */
export async function passwordFile(o: {
  key: string;
  gateways: readonly string[];
  devices: readonly string[];
}): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-pw-'));
  try {
    const file = path.join(dir, 'passwords');
    await run('bash', [path.join(DEPLOY_DIR, 'make-passwords.sh'), file, ...o.devices], {
      DEVICEGATE_DEVICE_KEY: o.key,
      GATEWAY_PASSWORD,
      GATEWAY_USERS: o.gateways.join(' '),
    });
    return await readFile(file, 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One line of a Mosquitto 2 password file for `user`, as `mosquitto_passwd` writes it: `$7$` = PBKDF2-SHA512 with
 * 101 iterations, a 12-byte salt, both base64.
 */
export function hashedPasswordLine(user: string, password: string): string {
  const salt = randomBytes(12);
  const hash = pbkdf2Sync(password, salt, 101, 64, 'sha512');
  return `${user}:$7$101$${salt.toString('base64')}$${hash.toString('base64')}\n`;
}

/** A private Mosquitto with the shipped config, ACL and password recipe. Stop it with `stopAll()` of procs.ts. */
export async function startBroker(o: BrokerOptions): Promise<Broker> {
  const gateways = o.gateways ?? ['devicegate-1', 'devicegate-2'];
  const [passwords, acl, shipped] = await Promise.all([
    passwordFile({ key: o.key, gateways, devices: o.devices }),
    aclFor(gateways),
    shippedMosquittoConf(),
  ]);
  const fleetLines = (o.fleet ?? []).map((id) => hashedPasswordLine(id, devicePassword(o.key, id)));
  const tlsPort = o.tls === undefined ? undefined : await freePort();
  const broker = await startMosquitto({
    files: { passwords: passwords + fleetLines.join(''), acl },
    persistence: o.persistence ?? false,
    config: [
      ...shipped,
      // listener settings follow their listener line; password file and ACL are global (per_listener_settings false)
      ...(o.tls === undefined || tlsPort === undefined
        ? []
        : await shippedTlsListener(tlsPort, path.dirname(o.tls.cert))),
      'password_file {dir}/passwords',
      'acl_file {dir}/acl',
      'log_dest file {dir}/mosquitto.log',
      ...(o.verboseLog ? ['log_type all'] : ['log_type error', 'log_type warning', 'log_type notice']),
      ...(o.extraConfig ?? []),
      // As root Mosquitto drops to the `mosquitto` user, which cannot read the test's mode-600 files.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
    ],
  });
  if (tlsPort !== undefined) await waitForPort(tlsPort);
  return Object.assign(broker, {
    tlsPort,
    gatewayUsers: gateways,
    log: () => readFile(path.join(broker.dir, 'mosquitto.log'), 'utf8').catch(() => ''),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The upstream

/** One token request as the IdP saw it. */
export interface TokenRequest {
  /** set once the provider has processed it */
  deviceCode: string | undefined;
  /** ms (Date.now()) when it arrived, before any processing */
  arrivedAt: number;
  /** `token`, the OAuth error it was answered with, `dropped` (held, and its sender died), or `unknown` */
  outcome: string;
}

export interface HeldRequest {
  arrivedAt: number;
  /** lets the provider process it (or drops it, if its sender has gone) */
  release(): void;
  /** whether the sender's connection is still open */
  readonly senderConnected: boolean;
}

export interface Upstream {
  readonly idp: DemoIdp;
  /** every token request, in arrival order */
  readonly tokenRequests: TokenRequest[];
  /** device_code → user_code, learnt when the code is redeemed */
  readonly userCodes: Map<string, string>;
  /** Holds the next token request until released; resolves once one arrives. */
  holdNext(): Promise<HeldRequest>;
  /** successful device_code redemptions */
  redemptions(): number;
  close(): Promise<void>;
}

/** The parts of Koa's context (oidc-provider is a Koa app) the event listeners read. */
interface ProviderContext {
  readonly req: IncomingMessage;
  readonly oidc: {
    readonly params?: Record<string, unknown>;
    readonly entities: { readonly DeviceCode?: { readonly userCode?: string } };
  };
}

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/**
 * The demo IdP with the device flow, instrumented through its `intercept` test hook (arrival times, holding) and
 * its provider events (which device_code a request was for, and how it was answered).
 */
export async function startUpstream(): Promise<Upstream> {
  const tokenRequests: TokenRequest[] = [];
  const byRequest = new WeakMap<IncomingMessage, TokenRequest>();
  const userCodes = new Map<string, string>();
  const holders: Array<(h: HeldRequest) => void> = [];

  const idp = await startDemoIdp({
    host: '127.0.0.1',
    port: 0,
    redirectUris: [],
    deviceFlow: true,
    log: createLogger('silent'),
    intercept(req, res, next) {
      if (req.method !== 'POST' || (req.url ?? '').split('?', 1)[0] !== '/token') return next();
      const record: TokenRequest = { deviceCode: undefined, arrivedAt: Date.now(), outcome: 'unknown' };
      tokenRequests.push(record);
      byRequest.set(req, record);
      const holder = holders.shift();
      if (holder === undefined) return next();
      const socket = req.socket;
      let gone = socket.destroyed;
      const leave = () => {
        gone = true;
      };
      socket.once('end', leave);
      socket.once('close', leave);
      holder({
        arrivedAt: record.arrivedAt,
        release() {
          socket.off('end', leave);
          socket.off('close', leave);
          if (gone || socket.destroyed) {
            // the gateway that sent it died while it was held: it never reaches the provider
            record.outcome = 'dropped';
            res.destroy();
          } else next();
        },
        get senderConnected() {
          return !gone && !socket.destroyed;
        },
      });
    },
  });
  // `ctx` is Koa's context, which the local typings only partly describe
  idp.provider.on('grant.success', (ctx) => {
    const c = ctx as unknown as ProviderContext;
    const record = byRequest.get(c.req);
    const deviceCode = c.oidc.params?.device_code;
    if (record === undefined || typeof deviceCode !== 'string') return;
    record.deviceCode = deviceCode;
    record.outcome = 'token';
    const userCode = c.oidc.entities.DeviceCode?.userCode;
    if (userCode !== undefined) userCodes.set(deviceCode, userCode);
  });
  idp.provider.on('grant.error', (ctx, err) => {
    const c = ctx as unknown as ProviderContext;
    const record = byRequest.get(c.req);
    const deviceCode = c.oidc.params?.device_code;
    if (record === undefined) return;
    if (typeof deviceCode === 'string') record.deviceCode = deviceCode;
    record.outcome = (err as { error?: string }).error ?? err.name;
  });

  return {
    idp,
    tokenRequests,
    userCodes,
    holdNext: () => new Promise((resolve) => holders.push(resolve)),
    redemptions: () => idp.stats.redemptions.get(DEVICE_GRANT) ?? 0,
    close: () => idp.close(),
  };
}

/** The upstream's userinfo endpoint with `accessToken`: 200 while the token is valid (not revoked). */
export async function userinfo(idp: DemoIdp, accessToken: string): Promise<number> {
  const meta = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as {
    userinfo_endpoint: string;
  };
  const res = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
  await res.body?.cancel();
  return res.status;
}

// ---------------------------------------------------------------------------------------------------------------
// Gateway instances

export interface InstanceEnvOptions {
  broker: Broker;
  /** the demo IdP of {@link startUpstream}, or any upstream with the same client credentials (the soak's fake) */
  upstream: {
    readonly idp: { readonly issuer: string; readonly clientId: string; readonly clientSecret: string };
  };
  redisUrl: string;
  key: string;
  secret: string;
  /** gateway username at the broker (one of broker.gatewayUsers) */
  username: string;
  leaseMs?: number;
}

/** The environment of one gateway instance: external broker, shared Redis, relay mode, 1 s polls. */
export function instanceEnv(o: InstanceEnvOptions): Record<string, string> {
  return {
    DEVICEGATE_MQTT_URL: o.broker.url,
    DEVICEGATE_MQTT_USERNAME: o.username,
    DEVICEGATE_MQTT_PASSWORD: GATEWAY_PASSWORD,
    DEVICEGATE_MQTT_CLIENT_ID: o.username,
    DEVICEGATE_REDIS_URL: o.redisUrl,
    DEVICEGATE_UPSTREAM_ISSUER: o.upstream.idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: o.upstream.idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: o.upstream.idp.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'device',
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_LEASE_MS: String(o.leaseMs ?? 3000),
    DEVICEGATE_DEVICE_KEY: o.key,
    DEVICEGATE_SECRET: o.secret,
    DEVICEGATE_LOG_LEVEL: 'info',
    // the demo IdP has one person, who approves every device of the fleet here: no per-person cap
    DEVICEGATE_APPROVALS_PER_PERSON: '0',
  };
}

/** The Redis key of a flow's hash (default key prefix): its field `t` is the lease token `{pid}.{random}`. */
export function flowKey(deviceId: string, rid: string, keyPrefix = 'devicegate:'): string {
  return `${keyPrefix}f:{${deviceId}}:${rid}`;
}

/** The pid in a lease token, or undefined. */
export function leasePid(token: string | null | undefined): number | undefined {
  const m = /^(\d+)\./.exec(token ?? '');
  return m === null ? undefined : Number(m[1]);
}

// ---------------------------------------------------------------------------------------------------------------
// A TCP proxy in front of Redis, to catch one instance at a chosen point of a visit

export interface RedisProxy {
  /** `redis://127.0.0.1:{port}`: give it to one gateway instance as DEVICEGATE_REDIS_URL */
  readonly url: string;
  /**
   * Once the client has run the lease script on `key` and then read that flow (HMGET `key`), calls `pause` before
   * the reply reaches the client: the instance then holds the lease and has read the flow, but has not yet seen it.
   * Resolves when it fired. One trap at a time; `disarm` cancels it.
   */
  pauseBeforeFlowRead(key: string, pause: () => void): Promise<void>;
  disarm(): void;
  close(): Promise<void>;
}

/** A plain byte-for-byte proxy to the Redis on `port` (each client connection gets its own upstream connection). */
export async function startRedisProxy(port: number): Promise<RedisProxy> {
  const { lease } = scripts;
  let trap: { key: string; pause: () => void; seen: string; fired: boolean; done: () => void } | undefined;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      if (trap !== undefined && !trap.fired) {
        // the lease script (by its SHA, or its source when sent with EVAL), then HMGET of the same key
        trap.seen = (trap.seen + chunk.toString('latin1')).slice(-8192);
        const leaseAt = Math.max(trap.seen.lastIndexOf(lease.sha), trap.seen.lastIndexOf('lease-1.lua'));
        const keyAfterLease = leaseAt < 0 ? -1 : trap.seen.indexOf(trap.key, leaseAt);
        const hmget = keyAfterLease < 0 ? -1 : trap.seen.toUpperCase().indexOf('HMGET', keyAfterLease);
        if (hmget >= 0 && trap.seen.indexOf(trap.key, hmget) >= 0) trap.fired = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (trap?.fired === true) {
        const t = trap;
        trap = undefined;
        t.pause();
        t.done();
      }
      client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxyPort = (server.address() as AddressInfo).port;
  return {
    url: `redis://127.0.0.1:${proxyPort}`,
    pauseBeforeFlowRead(key, pause) {
      return new Promise((resolve) => {
        trap = { key, pause, seen: '', fired: false, done: resolve };
      });
    },
    disarm() {
      trap = undefined;
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

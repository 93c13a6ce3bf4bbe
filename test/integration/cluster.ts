/**
 * The pieces of a scale-out deployment, for the external-broker, Mosquitto ACL, scale-out and failure tests:
 * - a private Mosquitto configured from the shipped files (deploy/mosquitto/mosquitto.conf, acl, and a password file
 *   written by deploy/mosquitto/make-passwords.sh), on a free port, logging to a file in its directory;
 * - the demo IdP (relay mode upstream) instrumented from outside through its public Koa hook (`provider.use`): every
 *   token request is recorded per device_code with its arrival time, and a test can hold the next token request
 *   (the gateway that sent it then holds the flow's lease) and drop it unprocessed if its sender died;
 * - the environment of a gateway instance in external-broker relay mode.
 * Not a test file: the suites import it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { startDemoIdp, type DemoIdp } from '../../src/demo/idp.ts';
import { createLogger } from '../../src/log.ts';
import { type ManagedProcess, startMosquitto } from '../helpers/procs.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEPLOY_DIR = path.join(REPO, 'deploy', 'mosquitto');
export const PREFIX = 'devicegate/v1';
export const GATEWAY_PASSWORD = 'gateway-test-password-0123456789';

export interface Broker extends ManagedProcess {
  /** the gateway usernames that have a password and an ACL block */
  readonly gatewayUsers: readonly string[];
  /** Mosquitto's log so far (`log_type all` when asked for, else the shipped log types) */
  log(): Promise<string>;
}

export interface BrokerOptions {
  /** fleet key the device passwords are derived from */
  key: string;
  devices: readonly string[];
  /** gateway usernames (default the two of deploy/mosquitto/acl); extra ones get a copy of its gateway ACL block */
  gateways?: readonly string[];
  /** log everything (CONNECT details, DISCONNECT) instead of the shipped error/warning/notice */
  verboseLog?: boolean;
  /** ACL lines appended to the shipped file (e.g. a test monitor account) */
  extraAcl?: string;
  /** `user:password` lines hashed into the password file besides the gateways and devices */
  extraUsers?: Record<string, string>;
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
]);

/** The shipped mosquitto.conf without the lines the test replaces. */
export async function shippedMosquittoConf(): Promise<string[]> {
  const text = await readFile(path.join(DEPLOY_DIR, 'mosquitto.conf'), 'utf8');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !OVERRIDDEN.has(l.split(/\s+/, 1)[0]!));
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

/**
 * The password file of `make-passwords.sh` for the gateways and devices (plus `extraUsers`, hashed with
 * `mosquitto_passwd -b`), as text.
 */
export async function passwordFile(o: {
  key: string;
  gateways: readonly string[];
  devices: readonly string[];
  extraUsers?: Record<string, string>;
}): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-pw-'));
  try {
    const file = path.join(dir, 'passwords');
    await run('bash', [path.join(DEPLOY_DIR, 'make-passwords.sh'), file, ...o.devices], {
      DEVICEGATE_DEVICE_KEY: o.key,
      GATEWAY_PASSWORD,
      GATEWAY_USERS: o.gateways.join(' '),
    });
    for (const [user, password] of Object.entries(o.extraUsers ?? {})) {
      await run('mosquitto_passwd', ['-b', file, user, password], {});
    }
    return await readFile(file, 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A private Mosquitto with the shipped config, ACL and password recipe. Stop it with `stopAll()` of procs.ts. */
export async function startBroker(o: BrokerOptions): Promise<Broker> {
  const gateways = o.gateways ?? ['devicegate-1', 'devicegate-2'];
  const [passwords, acl, shipped] = await Promise.all([
    passwordFile({ key: o.key, gateways, devices: o.devices, ...(o.extraUsers && { extraUsers: o.extraUsers }) }),
    aclFor(gateways),
    shippedMosquittoConf(),
  ]);
  const broker = await startMosquitto({
    files: { passwords, acl: o.extraAcl === undefined ? acl : `${acl}\n${o.extraAcl}\n` },
    config: [
      ...shipped,
      'password_file {dir}/passwords',
      'acl_file {dir}/acl',
      'log_dest file {dir}/mosquitto.log',
      ...(o.verboseLog ? ['log_type all'] : ['log_type error', 'log_type warning', 'log_type notice']),
      // As root Mosquitto drops to the `mosquitto` user, which cannot read the test's mode-600 files.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
    ],
  });
  return Object.assign(broker, {
    gatewayUsers: gateways,
    log: () => readFile(path.join(broker.dir, 'mosquitto.log'), 'utf8').catch(() => ''),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The upstream

/** One token request as the IdP saw it. */
export interface TokenRequest {
  deviceCode: string | undefined;
  /** ms (Date.now()) when it arrived, before any processing */
  arrivedAt: number;
  /** the OAuth error it was answered with, `token` on success, `dropped` when held and its sender died */
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
  /** user_code → device_code and when the device authorization was made */
  readonly codes: Map<string, { deviceCode: string; createdAt: number }>;
  /** Holds the next token request until released; resolves once one arrives. */
  holdNext(): Promise<HeldRequest>;
  /** successful device_code redemptions */
  redemptions(): number;
  /** token requests per device_code */
  pollsOf(deviceCode: string): TokenRequest[];
  close(): Promise<void>;
}

type Middleware = (ctx: KoaContextWithOIDC, next: () => Promise<void>) => Promise<void>;

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** The demo IdP with the device flow, instrumented as described above. */
export async function startUpstream(opts: { deviceCodeTtl?: number } = {}): Promise<Upstream> {
  const idp = await startDemoIdp({
    host: '127.0.0.1',
    port: 0,
    redirectUris: [],
    deviceFlow: true,
    log: createLogger('silent'),
    ...(opts.deviceCodeTtl !== undefined && { ttl: { deviceCode: opts.deviceCodeTtl } }),
  });
  const tokenRequests: TokenRequest[] = [];
  const codes = new Map<string, { deviceCode: string; createdAt: number }>();
  const holders: Array<(h: HeldRequest) => void> = [];

  const middleware: Middleware = async (ctx, next) => {
    if (ctx.method !== 'POST') return next();
    if (ctx.path === '/device/auth') {
      const createdAt = Date.now();
      await next();
      const body = ctx.body as { user_code?: string; device_code?: string } | undefined;
      if (body?.user_code !== undefined && body.device_code !== undefined) {
        codes.set(body.user_code, { deviceCode: body.device_code, createdAt });
      }
      return;
    }
    if (ctx.path !== '/token') return next();
    const record: TokenRequest = { deviceCode: undefined, arrivedAt: Date.now(), outcome: 'unknown' };
    tokenRequests.push(record);
    const holder = holders.shift();
    if (holder !== undefined) {
      const socket = ctx.req.socket;
      await new Promise<void>((release) =>
        holder({
          arrivedAt: record.arrivedAt,
          release,
          get senderConnected() {
            return !socket.destroyed;
          },
        }),
      );
      if (socket.destroyed) {
        // the gateway that sent it died while it was held: it never reaches the provider
        record.outcome = 'dropped';
        ctx.status = 503;
        return;
      }
    }
    await next();
    const params = ctx.oidc.params as Record<string, unknown> | undefined;
    if (typeof params?.device_code === 'string') record.deviceCode = params.device_code;
    const body = ctx.body as { error?: string; access_token?: string } | undefined;
    record.outcome = body?.access_token !== undefined ? 'token' : (body?.error ?? `http ${ctx.status}`);
  };
  // `use` is Koa's, exposed by oidc-provider (it puts the middleware before its routes); not in the local typings
  (idp.provider as unknown as { use(fn: Middleware): void }).use(middleware);

  return {
    idp,
    tokenRequests,
    codes,
    holdNext: () => new Promise((resolve) => holders.push(resolve)),
    redemptions: () => idp.stats.redemptions.get(DEVICE_GRANT) ?? 0,
    pollsOf: (deviceCode) => tokenRequests.filter((r) => r.deviceCode === deviceCode),
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
  upstream: Upstream;
  redisUrl: string;
  key: string;
  secret: string;
  /** gateway username at the broker (one of broker.gatewayUsers) */
  username: string;
  leaseMs?: number;
  extra?: Record<string, string>;
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
    ...o.extra,
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

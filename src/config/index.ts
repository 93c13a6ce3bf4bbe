/**
 * The gateway's configuration, read from the `DEVICEGATE_*` environment variables: the variable table with its
 * schemas and README sentences is ./schema.ts, the rules spanning several variables are ./checks.ts, and this file
 * turns a valid environment into the typed, frozen {@link Config}. The README's "Configuration" section is generated
 * from the table.
 */
import { type CodeEntryLimits, codeEntryLimits } from '../core/limits.ts';
import type { UpstreamMode } from '../core/flow.ts';
import { crossVariableProblems } from './checks.ts';
import { type ClientKey, readClientKey } from './client-key.ts';
import type { RedisTarget, SentinelTarget } from './redis-url.ts';
import { type Env, envSchema, upstreamMode, variableNames } from './schema.ts';

export type { UpstreamMode, ClientKey };

/** How the gateway authenticates at the upstream's token endpoint (RFC 6749 §2.3, OpenID Connect Core §9). */
export type UpstreamAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none' | 'private_key_jwt';

/** Configured upstream endpoints (instead of discovery). */
export interface UpstreamEndpoints {
  readonly deviceAuthorization?: string;
  readonly token?: string;
  readonly authorization?: string;
  /** RFC 7009 */
  readonly revocation?: string;
}
export { configDocs } from './schema.ts';

/** The embedded broker's TLS listener: files are paths, read at start and again on SIGHUP. */
export interface MqttTls {
  readonly host: string;
  /** 0: a free port (the bound one is in the gateway's addresses) */
  readonly port: number;
  readonly certFile: string;
  readonly keyFile: string;
  /** set: devices must present a certificate this CA verifies */
  readonly caFile?: string;
}

/** How the embedded broker authenticates devices (`DEVICEGATE_DEVICE_AUTH`). */
export type DeviceAuth = 'hmac' | 'cert' | 'none';

/** The validated configuration {@link loadConfig} returns, frozen; optional members are absent, never `undefined`. */
export interface Config {
  readonly production: boolean;
  /** undefined: `http://localhost:{HTTP port}` (see `publicUrlOf` in src/gateway/wiring.ts) */
  readonly publicUrl?: string;
  readonly http: { readonly host: string; readonly port: number };
  /** the operations port (`/metrics`, `/readyz`, the admin API with a token); absent: all on the public port */
  readonly admin?: { readonly host: string; readonly port: number; readonly token?: string };
  readonly mqtt:
    | {
        readonly kind: 'embedded';
        readonly host: string;
        readonly port: number;
        /** true when the port came from the default rather than the environment */
        readonly portIsDefault: boolean;
        /** the TLS listener, when a certificate and key are configured */
        readonly tls?: MqttTls;
        /** largest packet (bytes) sent to a device */
        readonly maxPacketSize: number;
      }
    | {
        readonly kind: 'external';
        readonly url: string;
        readonly username?: string;
        readonly password?: string;
        readonly clientId?: string;
        /** MQTT version of the gateway's connection: 4 (3.1.1) or 5 */
        readonly protocolVersion: 4 | 5;
        /** `$share/{group}/…` (several instances) or a plain subscription (one instance; docs/brokers.md) */
        readonly sharedSubscription: boolean;
        /** MQTT keepalive of the gateway's connection (s): how soon the broker gives up on a stalled instance */
        readonly keepaliveSeconds: number;
      };
  readonly topicPrefix: string;
  readonly redis?: {
    readonly url: string;
    readonly keyPrefix: string;
    /** set when `url` is a `redis+sentinel://` URL (./redis-url.ts) */
    readonly sentinel?: SentinelTarget;
  };
  readonly keyPrefix: string;
  /** undefined: start the demo identity provider */
  readonly upstream?: {
    readonly issuer: string;
    readonly clientId: string;
    readonly clientSecret?: string;
    /**
     * how the client authenticates (./checks.ts made sure the secret or key it needs is there); unset:
     * `client_secret_basic` with a secret, `none` without
     */
    readonly authMethod?: UpstreamAuthMethod;
    /** `private_key_jwt`: the signing key, read from `DEVICEGATE_UPSTREAM_CLIENT_KEY` */
    readonly clientKey?: ClientKey;
    /** set: no discovery; these endpoints (the ones the mode needs, ./checks.ts) are the upstream's metadata */
    readonly endpoints?: UpstreamEndpoints;
  };
  readonly mode: UpstreamMode;
  readonly upstreamTimeoutMs: number;
  readonly allowInsecureUpstream?: boolean;
  readonly defaultScope: string;
  readonly allowedScopes: ReadonlySet<string>;
  readonly deviceAuth: DeviceAuth;
  /** undefined: the published demo key (never in production) */
  readonly deviceKey?: string;
  /** the fleet key being rotated out; its passwords are still accepted */
  readonly previousDeviceKey?: string;
  /** undefined: a random secret per start (memory store only, never in production) */
  readonly secret?: string;
  readonly codeTtlSeconds: number;
  /** bridge mode: letters per user code (src/core/codes.ts) */
  readonly userCodeLength: number;
  readonly pollIntervalSeconds: number;
  readonly maxFlowsPerDevice: number;
  /** requests per second per device (burst ten times that); 0 = unlimited */
  readonly deviceRate: number;
  /** seconds a device's refresh token is kept for `req/refresh`; 0 = never */
  readonly grantTtlSeconds: number;
  readonly leaseMs: number;
  readonly demoPort: number;
  /** the demo advertises and binds a LAN address (src/demo/lan.ts) */
  readonly demoLan: boolean;
  /** fastify `trustProxy`: a hop count, or addresses/CIDRs; undefined = X-Forwarded-For ignored */
  readonly trustProxy?: number | string;
  /** the bridge-mode page's limits on failed code entries (RFC 8628 §5.1), derived in src/core/limits.ts */
  readonly codeEntryLimits: CodeEntryLimits;
  /** bridge mode: devices one person may approve per clock hour; 0 = no cap (src/service/approval-cap.ts) */
  readonly approvalsPerPerson: number;
  readonly logLevel: Env['DEVICEGATE_LOG_LEVEL'];
}

/** Raised by {@link loadConfig}; `problems` names every variable that is wrong, all at once. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Reads the configuration from a plain object (normally `process.env`). Reports every problem at once, naming the
 * variable, and returns a frozen, typed config. Only `DEVICEGATE_*` and `NODE_ENV` are read.
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const picked = pickVariables(env);
  const problems = unknownVariables(env);
  const parsed = envSchema.safeParse(picked);
  if (parsed.success) {
    problems.push(...crossVariableProblems(parsed.data));
    if (problems.length > 0) throw new ConfigError(problems);
    return Object.freeze(buildConfig(parsed.data, picked));
  }
  for (const issue of parsed.error.issues) problems.push(`${issue.path.join('.')}: ${issue.message}`);
  // One pass: the variables are independent in the schema, so without the malformed ones the rest parses, and the
  // cross-variable rules run on it (skipping the rules that read a malformed variable).
  const malformed = new Set(parsed.error.issues.map((issue) => String(issue.path[0])));
  const rest = envSchema.safeParse(
    Object.fromEntries(Object.entries(picked).filter(([name]) => !malformed.has(name))),
  );
  if (rest.success) problems.push(...crossVariableProblems(rest.data, malformed));
  throw new ConfigError(problems);
}

/** The known variables that are set to something; an empty value counts as unset. */
function pickVariables(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of variableNames) {
    const value = env[name];
    if (value !== undefined && value !== '') picked[name] = value;
  }
  return picked;
}

/** A `DEVICEGATE_*` variable outside the table is most likely a typo, which would otherwise go unnoticed. */
function unknownVariables(env: Readonly<Record<string, string | undefined>>): string[] {
  return Object.keys(env)
    .filter((name) => name.startsWith('DEVICEGATE_') && !variableNames.includes(name))
    .map((name) => `${name}: unknown variable`);
}

/** The typed config of an environment that passed the schema and ./checks.ts; `picked` tells set from defaulted. */
function buildConfig(e: Env, picked: Readonly<Record<string, string>>): Config {
  return {
    production: e.NODE_ENV === 'production',
    ...(e.DEVICEGATE_PUBLIC_URL !== undefined && { publicUrl: e.DEVICEGATE_PUBLIC_URL }),
    http: { host: e.DEVICEGATE_HTTP_HOST, port: e.DEVICEGATE_HTTP_PORT },
    ...adminConfig(e),
    mqtt: mqttConfig(e, picked.DEVICEGATE_MQTT_PORT === undefined),
    topicPrefix: e.DEVICEGATE_TOPIC_PREFIX,
    ...(e.DEVICEGATE_REDIS_URL !== undefined && { redis: redisConfig(e.DEVICEGATE_REDIS_URL, e) }),
    keyPrefix: e.DEVICEGATE_REDIS_KEY_PREFIX,
    ...upstreamConfig(e),
    mode: upstreamMode(e),
    upstreamTimeoutMs: e.DEVICEGATE_UPSTREAM_TIMEOUT,
    ...(e.DEVICEGATE_ALLOW_INSECURE_UPSTREAM !== undefined && {
      allowInsecureUpstream: e.DEVICEGATE_ALLOW_INSECURE_UPSTREAM,
    }),
    defaultScope: e.DEVICEGATE_DEFAULT_SCOPE,
    allowedScopes: allowedScopes(e),
    deviceAuth: e.DEVICEGATE_DEVICE_AUTH,
    ...(e.DEVICEGATE_DEVICE_KEY !== undefined && { deviceKey: e.DEVICEGATE_DEVICE_KEY }),
    ...(e.DEVICEGATE_DEVICE_KEY_PREVIOUS !== undefined && {
      previousDeviceKey: e.DEVICEGATE_DEVICE_KEY_PREVIOUS,
    }),
    ...(e.DEVICEGATE_SECRET !== undefined && { secret: e.DEVICEGATE_SECRET }),
    codeTtlSeconds: e.DEVICEGATE_CODE_TTL,
    userCodeLength: e.DEVICEGATE_USER_CODE_LENGTH,
    pollIntervalSeconds: e.DEVICEGATE_POLL_INTERVAL,
    maxFlowsPerDevice: e.DEVICEGATE_MAX_FLOWS_PER_DEVICE,
    deviceRate: e.DEVICEGATE_DEVICE_RATE,
    grantTtlSeconds: e.DEVICEGATE_GRANT_TTL,
    leaseMs: e.DEVICEGATE_LEASE_MS,
    demoPort: e.DEVICEGATE_DEMO_PORT,
    demoLan: e.DEVICEGATE_DEMO_LAN,
    ...(e.DEVICEGATE_TRUST_PROXY !== undefined && { trustProxy: trustProxy(e.DEVICEGATE_TRUST_PROXY) }),
    codeEntryLimits: codeEntryLimits({
      ttlSeconds: e.DEVICEGATE_CODE_TTL,
      liveCodes: e.DEVICEGATE_LIVE_CODES,
      codeLength: e.DEVICEGATE_USER_CODE_LENGTH,
      globalPerMinute: e.DEVICEGATE_CODE_ENTRY_LIMIT_GLOBAL,
      perIpPerMinute: e.DEVICEGATE_CODE_ENTRY_LIMIT_IP,
    }),
    approvalsPerPerson: e.DEVICEGATE_APPROVALS_PER_PERSON,
    logLevel: e.DEVICEGATE_LOG_LEVEL,
  };
}

function adminConfig(e: Env): Pick<Config, 'admin'> {
  const port = e.DEVICEGATE_ADMIN_PORT;
  if (port === undefined) return {};
  const token = e.DEVICEGATE_ADMIN_TOKEN;
  return { admin: { host: e.DEVICEGATE_ADMIN_HOST, port, ...(token !== undefined && { token }) } };
}

function redisConfig(target: RedisTarget, e: Env): NonNullable<Config['redis']> {
  return { ...target, keyPrefix: e.DEVICEGATE_REDIS_KEY_PREFIX };
}

function mqttConfig(e: Env, portIsDefault: boolean): Config['mqtt'] {
  if (e.DEVICEGATE_MQTT_URL === undefined) {
    const tls = mqttTls(e);
    return {
      kind: 'embedded',
      host: e.DEVICEGATE_MQTT_HOST,
      port: e.DEVICEGATE_MQTT_PORT,
      portIsDefault,
      maxPacketSize: e.DEVICEGATE_MQTT_MAX_PACKET_SIZE,
      ...(tls !== undefined && { tls }),
    };
  }
  return {
    kind: 'external',
    url: e.DEVICEGATE_MQTT_URL,
    ...(e.DEVICEGATE_MQTT_USERNAME !== undefined && { username: e.DEVICEGATE_MQTT_USERNAME }),
    ...(e.DEVICEGATE_MQTT_PASSWORD !== undefined && { password: e.DEVICEGATE_MQTT_PASSWORD }),
    ...(e.DEVICEGATE_MQTT_CLIENT_ID !== undefined && { clientId: e.DEVICEGATE_MQTT_CLIENT_ID }),
    protocolVersion: e.DEVICEGATE_MQTT_PROTOCOL_VERSION,
    sharedSubscription: e.DEVICEGATE_MQTT_SHARED_SUBSCRIPTION,
    keepaliveSeconds: e.DEVICEGATE_MQTT_KEEPALIVE,
  };
}

/** The TLS listener, when a certificate is configured (./checks.ts made sure the key comes with it). */
function mqttTls(e: Env): MqttTls | undefined {
  const certFile = e.DEVICEGATE_MQTT_TLS_CERT;
  const keyFile = e.DEVICEGATE_MQTT_TLS_KEY;
  if (certFile === undefined || keyFile === undefined) return undefined;
  return {
    host: e.DEVICEGATE_MQTT_TLS_HOST ?? e.DEVICEGATE_MQTT_HOST,
    port: e.DEVICEGATE_MQTT_TLS_PORT,
    certFile,
    keyFile,
    ...(e.DEVICEGATE_MQTT_TLS_CA !== undefined && { caFile: e.DEVICEGATE_MQTT_TLS_CA }),
  };
}

/** `{ upstream }` when one is configured (./checks.ts has made sure issuer and client id come together), else `{}`. */
function upstreamConfig(e: Env): Pick<Config, 'upstream'> {
  const issuer = e.DEVICEGATE_UPSTREAM_ISSUER;
  const clientId = e.DEVICEGATE_UPSTREAM_CLIENT_ID;
  if (issuer === undefined || clientId === undefined) return {};
  const secret = e.DEVICEGATE_UPSTREAM_CLIENT_SECRET;
  const keyPath = e.DEVICEGATE_UPSTREAM_CLIENT_KEY;
  const endpoints = upstreamEndpoints(e);
  return {
    upstream: {
      issuer,
      clientId,
      ...(secret !== undefined && { clientSecret: secret }),
      ...(e.DEVICEGATE_UPSTREAM_AUTH_METHOD !== undefined && {
        authMethod: e.DEVICEGATE_UPSTREAM_AUTH_METHOD,
      }),
      ...(keyPath !== undefined && { clientKey: readClientKey(keyPath) }),
      ...(endpoints !== undefined && { endpoints }),
    },
  };
}

/** The configured endpoints, or `undefined` when none is set (then the upstream is discovered). */
function upstreamEndpoints(e: Env): UpstreamEndpoints | undefined {
  const endpoints: UpstreamEndpoints = {
    ...(e.DEVICEGATE_UPSTREAM_DEVICE_AUTHORIZATION_ENDPOINT !== undefined && {
      deviceAuthorization: e.DEVICEGATE_UPSTREAM_DEVICE_AUTHORIZATION_ENDPOINT,
    }),
    ...(e.DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT !== undefined && {
      token: e.DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT,
    }),
    ...(e.DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT !== undefined && {
      authorization: e.DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT,
    }),
    ...(e.DEVICEGATE_UPSTREAM_REVOCATION_ENDPOINT !== undefined && {
      revocation: e.DEVICEGATE_UPSTREAM_REVOCATION_ENDPOINT,
    }),
  };
  return Object.keys(endpoints).length === 0 ? undefined : endpoints;
}

/** The configured (or default) allowed scopes, always including every token of the default scope. */
function allowedScopes(e: Env): ReadonlySet<string> {
  const allowed = new Set(
    (
      e.DEVICEGATE_ALLOWED_SCOPES ?? `${e.DEVICEGATE_DEFAULT_SCOPE} openid profile email offline_access`
    ).split(' '),
  );
  for (const s of e.DEVICEGATE_DEFAULT_SCOPE.split(' ')) allowed.add(s);
  return allowed;
}

/** fastify's `trustProxy`: a bare number is a hop count, anything else a list of addresses/CIDRs. */
function trustProxy(value: string): number | string {
  return /^\d+$/.test(value) ? Number(value) : value;
}

/**
 * One zod schema over the `DEVICEGATE_*` environment variables (DESIGN §4). It gives the config its type, its
 * validation and its documentation: `configDocs` below is rendered into the README's configuration table and a test
 * keeps the two in agreement.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import type { UpstreamMode } from '../core/flow.ts';
import { type CodeEntryLimits, codeEntryLimits } from '../core/limits.ts';

export type { UpstreamMode };

// eslint-disable-next-line no-control-regex -- NUL is forbidden in MQTT topic names
const TOPIC_LEVEL = /^[^#+/\u0000]+$/;

const port = z.coerce.number().int().min(0).max(65535);
const seconds = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const optionalString = z
  .string()
  .transform((v) => (v.trim() === '' ? undefined : v.trim()))
  .optional();
const optionalUrl = (protocols: readonly string[]) =>
  optionalString.pipe(
    z
      .string()
      .refine((v) => URL.canParse(v) && protocols.includes(new URL(v).protocol), {
        message: `must be a URL (${protocols.join(' or ')})`,
      })
      .optional(),
  );
const scopeList = z
  .string()
  .regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'must be space-separated scope tokens');

/** Each entry: the variable, its schema, and the sentence the README shows for it. */
const entries = {
  DEVICEGATE_PUBLIC_URL: {
    schema: z
      .string()
      .refine((v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol), 'must be an http(s) URL')
      .transform((v) => v.replace(/\/+$/, ''))
      .optional(),
    doc: 'Base URL people and the upstream reach the gateway at (default `http://localhost:{HTTP port}`); `verification_uri` and the OAuth redirect URI are built from it and never from request headers.',
  },
  DEVICEGATE_HTTP_HOST: {
    schema: z.string().min(1).default('127.0.0.1'),
    doc: 'Address the HTTP server (code page, callback, health, metrics) binds to. Use `0.0.0.0` in containers.',
  },
  DEVICEGATE_HTTP_PORT: { schema: port.default(8080), doc: 'HTTP port; 0 picks a free port and logs it.' },
  DEVICEGATE_MQTT_HOST: {
    schema: z.string().min(1).default('127.0.0.1'),
    doc: 'Address the embedded MQTT broker binds to.',
  },
  DEVICEGATE_MQTT_PORT: {
    schema: port.default(1883),
    doc: 'Embedded broker port; 0 picks a free port and logs it. Unused when `DEVICEGATE_MQTT_URL` is set.',
  },
  DEVICEGATE_MQTT_URL: {
    schema: optionalUrl(['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ws:', 'wss:']),
    doc: 'When set, use this external broker (as an MQTT client) instead of the embedded one.',
  },
  DEVICEGATE_MQTT_USERNAME: {
    schema: optionalString,
    doc: "The gateway's own username at the external broker.",
  },
  DEVICEGATE_MQTT_PASSWORD: {
    schema: optionalString,
    doc: "The gateway's own password at the external broker.",
  },
  DEVICEGATE_MQTT_CLIENT_ID: {
    schema: optionalString,
    doc: "Client id at the external broker (default: `devicegate-` and a random suffix). Unique per instance; with Mosquitto's `use_username_as_clientid`, each instance also needs its own `DEVICEGATE_MQTT_USERNAME`.",
  },
  DEVICEGATE_TOPIC_PREFIX: {
    schema: z
      .string()
      .default('devicegate/v1')
      .refine(
        (v) => !v.startsWith('$') && v.split('/').every((level) => TOPIC_LEVEL.test(level)),
        'must be topic levels without wildcards, empty levels or a leading $',
      ),
    doc: 'Topic prefix of the device contract.',
  },
  DEVICEGATE_REDIS_URL: {
    schema: optionalUrl(['redis:', 'rediss:']),
    doc: 'Redis for flows, shared by every instance. Unset: in-memory store, one instance only.',
  },
  DEVICEGATE_REDIS_KEY_PREFIX: {
    schema: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[^{}\s]+$/, 'must not contain braces (they are Redis Cluster hash tags) or spaces')
      .default('devicegate:'),
    doc: 'Prefix of every Redis key the gateway writes.',
  },
  DEVICEGATE_UPSTREAM_ISSUER: {
    schema: optionalUrl(['https:', 'http:']),
    doc: 'Issuer of the upstream OAuth/OIDC server (found by discovery). Unset: the built-in demo identity provider starts (refused when `NODE_ENV=production`).',
  },
  DEVICEGATE_UPSTREAM_CLIENT_ID: { schema: optionalString, doc: "The gateway's client id at the upstream." },
  DEVICEGATE_UPSTREAM_CLIENT_SECRET: {
    schema: optionalString,
    doc: "The gateway's client secret at the upstream (`client_secret_basic`); unset means a public client.",
  },
  DEVICEGATE_UPSTREAM_MODE: {
    schema: z.enum(['device', 'authorization_code']).optional(),
    doc: '`device` relays to the upstream RFC 8628 endpoint; `authorization_code` bridges to authorization code + PKCE and the gateway issues the codes. Default: `device` with a configured upstream, `authorization_code` for the demo.',
  },
  DEVICEGATE_UPSTREAM_TIMEOUT: {
    schema: z.coerce.number().int().min(100).max(60_000).default(5000),
    doc: 'Deadline in milliseconds for one upstream HTTP exchange, body included.',
  },
  DEVICEGATE_ALLOW_INSECURE_UPSTREAM: {
    schema: bool.optional(),
    doc: 'Allow a plain-http upstream. Default: allowed for loopback hosts outside production (with a warning), refused otherwise.',
  },
  DEVICEGATE_DEFAULT_SCOPE: {
    schema: scopeList.default('openid'),
    doc: 'Scope asked for when the device sends none.',
  },
  DEVICEGATE_ALLOWED_SCOPES: {
    schema: scopeList.optional(),
    doc: 'Scopes a device may ask for (space-separated); anything else is `invalid_scope`. Default: the default scope plus `openid profile email offline_access`.',
  },
  DEVICEGATE_DEVICE_KEY: {
    schema: optionalString.pipe(z.string().min(16, 'must be at least 16 characters').optional()),
    doc: 'Fleet key: a device password is `base64url(HMAC-SHA256(key, deviceId))`. Required in production; outside it a published demo key is used with a warning.',
  },
  DEVICEGATE_DEVICE_AUTH: {
    schema: z.enum(['hmac', 'none']).default('hmac'),
    doc: '`hmac` checks device credentials; `none` accepts any device (demos only; refused in production).',
  },
  DEVICEGATE_SECRET: {
    schema: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
    doc: 'Secret that keys the user-code HMAC, the encryption of tokens and device codes at rest, and the page cookies. Every instance on one Redis needs the same value. Required with Redis or in production; otherwise random per start.',
  },
  DEVICEGATE_CODE_TTL: {
    schema: seconds(30, 1800).default(600),
    doc: 'Flow lifetime in seconds (relay mode: at most this, less if the upstream says less).',
  },
  DEVICEGATE_POLL_INTERVAL: {
    schema: seconds(1, 60).default(5),
    doc: 'Relay mode: poll interval in seconds when the upstream sends none (RFC 8628 §3.2).',
  },
  DEVICEGATE_MAX_FLOWS_PER_DEVICE: {
    schema: z.coerce.number().int().min(1).max(100).default(3),
    doc: 'Live (unfinished) flows one device may have at once.',
  },
  DEVICEGATE_DEVICE_RATE: {
    schema: z.coerce.number().min(0).max(10_000).default(1),
    doc: 'Requests per second one device may send (bursts of ten times that); faster ones are answered `slow_down` with `retry_after`. Per instance; 0 turns the limit off.',
  },
  DEVICEGATE_GRANT_TTL: {
    schema: seconds(0, 400 * 86400).default(30 * 86400),
    doc: "How long (seconds) the gateway keeps a device's refresh token (sealed) for `req/refresh`, when the upstream issued one (scope `offline_access`). 0: never keep refresh tokens.",
  },
  DEVICEGATE_LEASE_MS: {
    schema: z.coerce.number().int().min(1000).max(300_000).default(10_000),
    doc: 'How long one instance owns a due poll or delivery before another may take it over.',
  },
  DEVICEGATE_TRUST_PROXY: {
    schema: optionalString.pipe(
      z
        .string()
        .refine(
          (v) => /^\d{1,2}$/.test(v) || v.split(',').every((p) => isIP(p.trim().split('/')[0] ?? '') !== 0),
          'must be a hop count or comma-separated proxy addresses/CIDRs',
        )
        .optional(),
    ),
    doc: 'Proxies whose `X-Forwarded-For` is believed for the client address (the code page limits): comma-separated addresses or CIDRs (e.g. `10.0.0.0/8,127.0.0.1`), or a hop count. Unset: `X-Forwarded-For` is ignored.',
  },
  DEVICEGATE_LIVE_CODES: {
    schema: z.coerce.number().int().min(1).max(10_000_000).default(250),
    doc: 'Bridge mode: how many codes you expect to be live at once. The default global limit on failed code entries is derived from it, the code entropy (20^8) and `DEVICEGATE_CODE_TTL` so that guessing any live code within its lifetime stays below 10^-6.',
  },
  DEVICEGATE_CODE_ENTRY_LIMIT_GLOBAL: {
    schema: z.coerce.number().int().min(1).max(100_000).optional(),
    doc: 'Failed code entries per minute over all clients and instances (RFC 8628 §5.1). Default: floor(10^-6 × 20^8 × 60 / (`DEVICEGATE_CODE_TTL` × `DEVICEGATE_LIVE_CODES`)), at least 1 — 10 with the defaults.',
  },
  DEVICEGATE_CODE_ENTRY_LIMIT_IP: {
    schema: z.coerce.number().int().min(1).max(1000).optional(),
    doc: 'Failed code entries per minute per client address (IPv6: per /64). Default: 5, or the global limit when that is lower.',
  },
  DEVICEGATE_DEMO_PORT: {
    schema: port.default(8081),
    doc: 'Port of the built-in demo identity provider (only when no upstream is configured); 0 picks one.',
  },
  DEVICEGATE_LOG_LEVEL: {
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    doc: 'Log level. Tokens, device codes, user codes and secrets are never logged at any level.',
  },
  NODE_ENV: {
    schema: optionalString,
    doc: '`production` refuses demo defaults: the demo upstream, the demo device key, `DEVICEGATE_DEVICE_AUTH=none`, a random secret.',
  },
} as const;

type Entries = typeof entries;
const shape = Object.fromEntries(Object.entries(entries).map(([k, v]) => [k, v.schema])) as {
  [K in keyof Entries]: Entries[K]['schema'];
};
const envSchema = z.object(shape);
type Env = z.output<typeof envSchema>;

/** The variables, their defaults and their meaning, for the README table. */
export const configDocs: ReadonlyArray<{ name: string; doc: string; default?: string }> = Object.entries(
  entries,
).map(([name, e]) => {
  const parsed = e.schema.safeParse(undefined);
  const def = parsed.success && parsed.data !== undefined ? String(parsed.data) : undefined;
  return def === undefined ? { name, doc: e.doc } : { name, doc: e.doc, default: def };
});

export interface Config {
  readonly production: boolean;
  /** undefined: `http://localhost:{the HTTP port actually bound}` */
  readonly publicUrl?: string;
  readonly http: { readonly host: string; readonly port: number };
  readonly mqtt:
    | {
        readonly kind: 'embedded';
        readonly host: string;
        readonly port: number;
        /** true when the port came from the default rather than the environment */
        readonly portIsDefault: boolean;
      }
    | {
        readonly kind: 'external';
        readonly url: string;
        readonly username?: string;
        readonly password?: string;
        readonly clientId?: string;
      };
  readonly topicPrefix: string;
  readonly redis?: { readonly url: string; readonly keyPrefix: string };
  readonly keyPrefix: string;
  /** undefined: start the demo identity provider */
  readonly upstream?: {
    readonly issuer: string;
    readonly clientId: string;
    readonly clientSecret?: string;
  };
  readonly mode: UpstreamMode;
  readonly upstreamTimeoutMs: number;
  readonly allowInsecureUpstream?: boolean;
  readonly defaultScope: string;
  readonly allowedScopes: ReadonlySet<string>;
  readonly deviceAuth: 'hmac' | 'none';
  /** undefined: the published demo key (never in production) */
  readonly deviceKey?: string;
  /** undefined: a random secret per start (memory store only, never in production) */
  readonly secret?: string;
  readonly codeTtlSeconds: number;
  readonly pollIntervalSeconds: number;
  readonly maxFlowsPerDevice: number;
  /** requests per second per device (burst ten times that); 0 = unlimited */
  readonly deviceRate: number;
  /** seconds a device's refresh token is kept for `req/refresh`; 0 = never */
  readonly grantTtlSeconds: number;
  readonly leaseMs: number;
  readonly demoPort: number;
  /** fastify `trustProxy`: a hop count, or addresses/CIDRs; undefined = X-Forwarded-For ignored */
  readonly trustProxy?: number | string;
  /** the bridge-mode page's limits on failed code entries (RFC 8628 §5.1), derived in src/core/limits.ts */
  readonly codeEntryLimits: CodeEntryLimits;
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
  const picked: Record<string, string> = {};
  for (const name of Object.keys(entries)) {
    const value = env[name];
    if (value !== undefined && value !== '') picked[name] = value;
  }
  const problems: string[] = [];
  for (const name of Object.keys(env)) {
    if (name.startsWith('DEVICEGATE_') && !(name in entries)) problems.push(`${name}: unknown variable`);
  }
  const parsed = envSchema.safeParse(picked);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${issue.path.join('.')}: ${issue.message}`);
  }
  if (!parsed.success) throw new ConfigError(problems);
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';

  const upstreamSet = e.DEVICEGATE_UPSTREAM_ISSUER !== undefined;
  if (upstreamSet && e.DEVICEGATE_UPSTREAM_CLIENT_ID === undefined) {
    problems.push('DEVICEGATE_UPSTREAM_CLIENT_ID: required when DEVICEGATE_UPSTREAM_ISSUER is set');
  }
  if (!upstreamSet && e.DEVICEGATE_UPSTREAM_CLIENT_ID !== undefined) {
    problems.push('DEVICEGATE_UPSTREAM_ISSUER: required when DEVICEGATE_UPSTREAM_CLIENT_ID is set');
  }
  if (production) {
    if (!upstreamSet) problems.push('DEVICEGATE_UPSTREAM_ISSUER: required in production (no demo upstream)');
    if (e.DEVICEGATE_DEVICE_AUTH === 'none')
      problems.push('DEVICEGATE_DEVICE_AUTH: "none" is refused in production');
    if (e.DEVICEGATE_DEVICE_AUTH === 'hmac' && e.DEVICEGATE_DEVICE_KEY === undefined) {
      problems.push('DEVICEGATE_DEVICE_KEY: required in production');
    }
    if (e.DEVICEGATE_SECRET === undefined) problems.push('DEVICEGATE_SECRET: required in production');
  }
  if (e.DEVICEGATE_REDIS_URL !== undefined && e.DEVICEGATE_SECRET === undefined) {
    problems.push('DEVICEGATE_SECRET: required with DEVICEGATE_REDIS_URL (every instance must share it)');
  }
  if (e.DEVICEGATE_MQTT_URL === undefined && (e.DEVICEGATE_MQTT_USERNAME ?? e.DEVICEGATE_MQTT_PASSWORD)) {
    problems.push('DEVICEGATE_MQTT_USERNAME: only used with DEVICEGATE_MQTT_URL');
  }
  const mode: UpstreamMode = e.DEVICEGATE_UPSTREAM_MODE ?? (upstreamSet ? 'device' : 'authorization_code');
  if (
    mode === 'authorization_code' &&
    e.DEVICEGATE_HTTP_PORT === 0 &&
    e.DEVICEGATE_PUBLIC_URL === undefined
  ) {
    // the redirect URI registered at the upstream is built from the public URL before any port is bound
    problems.push('DEVICEGATE_PUBLIC_URL: required in bridge mode when DEVICEGATE_HTTP_PORT is 0');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const allowed = new Set(
    (
      e.DEVICEGATE_ALLOWED_SCOPES ?? `${e.DEVICEGATE_DEFAULT_SCOPE} openid profile email offline_access`
    ).split(' '),
  );
  for (const s of e.DEVICEGATE_DEFAULT_SCOPE.split(' ')) allowed.add(s);

  const config: Config = {
    production,
    ...(e.DEVICEGATE_PUBLIC_URL !== undefined && { publicUrl: e.DEVICEGATE_PUBLIC_URL }),
    http: { host: e.DEVICEGATE_HTTP_HOST, port: e.DEVICEGATE_HTTP_PORT },
    mqtt:
      e.DEVICEGATE_MQTT_URL === undefined
        ? {
            kind: 'embedded',
            host: e.DEVICEGATE_MQTT_HOST,
            port: e.DEVICEGATE_MQTT_PORT,
            portIsDefault: picked.DEVICEGATE_MQTT_PORT === undefined,
          }
        : {
            kind: 'external',
            url: e.DEVICEGATE_MQTT_URL,
            ...(e.DEVICEGATE_MQTT_USERNAME !== undefined && { username: e.DEVICEGATE_MQTT_USERNAME }),
            ...(e.DEVICEGATE_MQTT_PASSWORD !== undefined && { password: e.DEVICEGATE_MQTT_PASSWORD }),
            ...(e.DEVICEGATE_MQTT_CLIENT_ID !== undefined && { clientId: e.DEVICEGATE_MQTT_CLIENT_ID }),
          },
    topicPrefix: e.DEVICEGATE_TOPIC_PREFIX,
    ...(e.DEVICEGATE_REDIS_URL !== undefined && {
      redis: { url: e.DEVICEGATE_REDIS_URL, keyPrefix: e.DEVICEGATE_REDIS_KEY_PREFIX },
    }),
    keyPrefix: e.DEVICEGATE_REDIS_KEY_PREFIX,
    ...(upstreamSet && {
      upstream: {
        issuer: e.DEVICEGATE_UPSTREAM_ISSUER as string,
        clientId: e.DEVICEGATE_UPSTREAM_CLIENT_ID as string,
        ...(e.DEVICEGATE_UPSTREAM_CLIENT_SECRET !== undefined && {
          clientSecret: e.DEVICEGATE_UPSTREAM_CLIENT_SECRET,
        }),
      },
    }),
    mode,
    upstreamTimeoutMs: e.DEVICEGATE_UPSTREAM_TIMEOUT,
    ...(e.DEVICEGATE_ALLOW_INSECURE_UPSTREAM !== undefined && {
      allowInsecureUpstream: e.DEVICEGATE_ALLOW_INSECURE_UPSTREAM,
    }),
    defaultScope: e.DEVICEGATE_DEFAULT_SCOPE,
    allowedScopes: allowed,
    deviceAuth: e.DEVICEGATE_DEVICE_AUTH,
    ...(e.DEVICEGATE_DEVICE_KEY !== undefined && { deviceKey: e.DEVICEGATE_DEVICE_KEY }),
    ...(e.DEVICEGATE_SECRET !== undefined && { secret: e.DEVICEGATE_SECRET }),
    codeTtlSeconds: e.DEVICEGATE_CODE_TTL,
    pollIntervalSeconds: e.DEVICEGATE_POLL_INTERVAL,
    maxFlowsPerDevice: e.DEVICEGATE_MAX_FLOWS_PER_DEVICE,
    deviceRate: e.DEVICEGATE_DEVICE_RATE,
    grantTtlSeconds: e.DEVICEGATE_GRANT_TTL,
    leaseMs: e.DEVICEGATE_LEASE_MS,
    demoPort: e.DEVICEGATE_DEMO_PORT,
    ...(e.DEVICEGATE_TRUST_PROXY !== undefined && {
      trustProxy: /^\d+$/.test(e.DEVICEGATE_TRUST_PROXY)
        ? Number(e.DEVICEGATE_TRUST_PROXY)
        : e.DEVICEGATE_TRUST_PROXY,
    }),
    codeEntryLimits: codeEntryLimits({
      ttlSeconds: e.DEVICEGATE_CODE_TTL,
      liveCodes: e.DEVICEGATE_LIVE_CODES,
      globalPerMinute: e.DEVICEGATE_CODE_ENTRY_LIMIT_GLOBAL,
      perIpPerMinute: e.DEVICEGATE_CODE_ENTRY_LIMIT_IP,
    }),
    logLevel: e.DEVICEGATE_LOG_LEVEL,
  };
  return Object.freeze(config);
}

/**
 * The table of `DEVICEGATE_*` environment variables: for each one its zod schema (type, validation, default) and the
 * sentence the README's configuration table shows for it (`configDocs`, rendered by `./docs.ts`; a test keeps the
 * README in step). Cross-variable rules live in `./checks.ts`.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import type { UpstreamMode } from '../core/flow.ts';
import { DEFAULT_USER_CODE_LENGTH, MAX_USER_CODE_LENGTH, MIN_USER_CODE_LENGTH } from '../core/codes.ts';
import { MQTT_URL_PROTOCOLS } from '../core/protocol.ts';
import { parseRedisUrl } from './redis-url.ts';

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
/**
 * Space-separated scope tokens (RFC 6749 §3.3). Not `isScope` from src/core/protocol.ts: that one also caps a
 * device's request at 512 characters, which the configured lists have never had.
 */
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
    doc: 'Base URL people and the upstream reach the gateway at (default `http://localhost:{HTTP port}`); `verification_uri` and the OAuth redirect URI are built from it and never from request headers. Required, and https, when `NODE_ENV=production`.',
  },
  DEVICEGATE_HTTP_HOST: {
    schema: z.string().min(1).default('127.0.0.1'),
    doc: 'Address the HTTP server (code page, callback, health, metrics) binds to. Use `0.0.0.0` in containers.',
  },
  DEVICEGATE_HTTP_PORT: {
    schema: port.default(8080),
    doc: 'HTTP port; 0 picks a free port and logs it (bridge mode then needs `DEVICEGATE_PUBLIC_URL`: the redirect URI is fixed before the port is bound).',
  },
  DEVICEGATE_ADMIN_PORT: {
    schema: port.optional(),
    doc: 'Operations port: when set, `/metrics`, `/readyz` and the admin API are served here and no longer on the public HTTP port (`/healthz` is on both); 0 picks a free port and logs it. Unset: `/metrics` and `/readyz` stay on the public port and there is no admin API.',
  },
  DEVICEGATE_ADMIN_HOST: {
    schema: z.string().min(1).default('127.0.0.1'),
    doc: 'Address the operations port binds to. It speaks plain HTTP: with a token on a non-loopback address the gateway warns at start (and `config check` says so); keep it on a private network.',
  },
  DEVICEGATE_ADMIN_TOKEN: {
    schema: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
    doc: 'Bearer token of the admin API on the operations port (`Authorization: Bearer …`, compared in constant time). Unset: no admin API at all (404). Needs `DEVICEGATE_ADMIN_PORT`.',
  },
  DEVICEGATE_MQTT_HOST: {
    schema: z.string().min(1).default('127.0.0.1'),
    doc: "Address the embedded MQTT broker's plain (unencrypted) listener binds to; WebSocket devices use the HTTP server's `/mqtt`.",
  },
  DEVICEGATE_MQTT_PORT: {
    schema: port.default(1883),
    doc: 'Embedded broker port; 0 picks a free port and logs it. Unused when `DEVICEGATE_MQTT_URL` is set.',
  },
  DEVICEGATE_MQTT_TLS_CERT: {
    schema: optionalString,
    doc: "Path of the embedded broker's TLS certificate (PEM, the chain after it); with `DEVICEGATE_MQTT_TLS_KEY` it opens a TLS listener (TLS 1.2 or newer) beside the plain one. Both files are read again on SIGHUP: new connections get the new certificate, open ones stay.",
  },
  DEVICEGATE_MQTT_TLS_KEY: {
    schema: optionalString,
    doc: 'Path of the private key (PEM) of `DEVICEGATE_MQTT_TLS_CERT`.',
  },
  DEVICEGATE_MQTT_TLS_CA: {
    schema: optionalString,
    doc: 'Path of the CA certificate(s) (PEM) device certificates must be signed by. Set: every device on the TLS listener must present a certificate this CA verifies, or the handshake fails. Needed by `DEVICEGATE_DEVICE_AUTH=cert`.',
  },
  DEVICEGATE_MQTT_TLS_HOST: {
    schema: optionalString,
    doc: 'Address the TLS listener binds to (default `DEVICEGATE_MQTT_HOST`). In production keep the plain listener on loopback and open this one, e.g. `0.0.0.0`.',
  },
  DEVICEGATE_MQTT_TLS_PORT: {
    schema: port.default(8883),
    doc: 'Port of the TLS listener (with `DEVICEGATE_MQTT_TLS_CERT`); 0 picks a free port and logs it.',
  },
  DEVICEGATE_MQTT_ALLOW_PLAINTEXT: {
    schema: bool.default(false),
    doc: "With `NODE_ENV=production` the embedded broker's plain (unencrypted) listener must bind a loopback address; `true` allows any address, for a load balancer that terminates TLS in front of it.",
  },
  DEVICEGATE_MQTT_MAX_PACKET_SIZE: {
    schema: z.coerce.number().int().min(1024).max(268_435_455).default(262_144),
    doc: "Largest MQTT packet (bytes, the whole PUBLISH) the embedded broker sends a device: the fleet's firmware limit. A token whose reply would be larger ends the flow with `reply_too_large` instead of reaching a device that cannot take it. With `DEVICEGATE_MQTT_URL`, the broker's own MQTT 5 limit applies instead.",
  },
  DEVICEGATE_MQTT_URL: {
    schema: optionalUrl(MQTT_URL_PROTOCOLS),
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
  DEVICEGATE_MQTT_PROTOCOL_VERSION: {
    schema: z
      .enum(['4', '5'])
      .default('4')
      .transform((v) => (v === '5' ? 5 : 4)),
    doc: "MQTT version of the gateway's own connection to the external broker: `4` (3.1.1) or `5`. With `5`, a device's MQTT 5 request that names a Response Topic (its own `res` or below it) is answered there with its Correlation Data. Devices may use either version regardless; the embedded broker speaks 3.1.1.",
  },
  DEVICEGATE_MQTT_KEEPALIVE: {
    schema: seconds(1, 3600).default(30),
    doc: "MQTT keepalive (seconds) of the gateway's own connection to the external broker. A broker gives up on a client that sent nothing for 1.5 × this; until then an instance that stalls (SIGSTOP, a VM freeze) keeps receiving its share of the requests, answered when it resumes. Shorter is not always better: Mosquitto 2.0.11 kept routing part of the share to a dropped instance, where those requests were lost instead of delayed (docs/brokers.md). Devices repeat an unanswered request (README, device contract).",
  },
  DEVICEGATE_MQTT_SHARED_SUBSCRIPTION: {
    schema: bool.default(true),
    doc: '`true`: consume requests through the shared subscription `$share/{group}/{prefix}/+/req/+`, so several instances split them (Mosquitto, EMQX, HiveMQ, VerneMQ). `false`: subscribe to `{prefix}/+/req/+` plainly, for brokers that grant `$share` but never deliver through it (NATS, RabbitMQ, a standalone aedes); one instance only — with Redis the instances register there and a second one refuses to start; the memory store is one instance anyway. A delivery self-check after every subscribe tells which one the broker needs (docs/brokers.md).',
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
    schema: optionalString.pipe(
      z
        .string()
        .transform((v, ctx) => {
          const target = parseRedisUrl(v);
          if (typeof target !== 'string') return target;
          ctx.addIssue({ code: 'custom', message: target });
          return z.NEVER;
        })
        .optional(),
    ),
    doc: "Redis for flows, shared by every instance: `redis://` or `rediss://`, or Sentinel as `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/masterName` (sentinel port 26379 by default; the credentials are the master's). Its `maxmemory-policy` must be `noeviction` (checked at start: refused in production, a warning otherwise). Unset: in-memory store, one instance only.",
  },
  DEVICEGATE_REDIS_KEY_PREFIX: {
    schema: z
      .string()
      .min(1)
      .max(64)
      // every key of a flow carries `{deviceId}` as its hash tag, which keeps the flow's keys together
      // (src/store/redis/index.ts); a brace in the prefix would become the hash tag instead
      .regex(/^[^{}\s]+$/, "must not contain braces (the device id is the keys' hash tag) or spaces")
      .default('devicegate:'),
    doc: 'Prefix of every Redis key the gateway writes.',
  },
  DEVICEGATE_UPSTREAM_ISSUER: {
    schema: optionalUrl(['https:', 'http:']),
    doc: 'Issuer of the upstream OAuth/OIDC server: found by discovery, unless the endpoints below are set; checked wherever the upstream states an issuer. Unset: the built-in demo identity provider starts (refused when `NODE_ENV=production`).',
  },
  DEVICEGATE_UPSTREAM_CLIENT_ID: { schema: optionalString, doc: "The gateway's client id at the upstream." },
  DEVICEGATE_UPSTREAM_CLIENT_SECRET: {
    schema: optionalString,
    doc: "The gateway's client secret at the upstream; how it is sent is `DEVICEGATE_UPSTREAM_AUTH_METHOD`.",
  },
  DEVICEGATE_UPSTREAM_AUTH_METHOD: {
    schema: z.enum(['client_secret_basic', 'client_secret_post', 'none', 'private_key_jwt']).optional(),
    doc: 'How the gateway authenticates at the upstream: `client_secret_basic` (default with a client secret), `client_secret_post`, `none` (a public client; default without a secret), or `private_key_jwt` (with `DEVICEGATE_UPSTREAM_CLIENT_KEY`).',
  },
  DEVICEGATE_UPSTREAM_CLIENT_KEY: {
    schema: optionalString,
    doc: "Path of the gateway's private key (PEM, or a JWK whose `kid` and `x5t#S256` go into the assertion's header) for `private_key_jwt`; read at start.",
  },
  DEVICEGATE_UPSTREAM_DEVICE_AUTHORIZATION_ENDPOINT: {
    schema: optionalUrl(['https:', 'http:']),
    doc: "The upstream's RFC 8628 device authorization endpoint (relay mode). With the token endpoint it replaces discovery, for upstreams that publish no metadata (GitHub).",
  },
  DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT: {
    schema: optionalUrl(['https:', 'http:']),
    doc: "The upstream's token endpoint. Set it with the other endpoints the mode needs and no discovery is made; the issuer stays the upstream's identity.",
  },
  DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT: {
    schema: optionalUrl(['https:', 'http:']),
    doc: "The upstream's authorization endpoint (bridge mode), with the token endpoint instead of discovery.",
  },
  DEVICEGATE_UPSTREAM_REVOCATION_ENDPOINT: {
    schema: optionalUrl(['https:', 'http:']),
    doc: "The upstream's RFC 7009 revocation endpoint, when the endpoints are configured (optional: without it replaced refresh tokens are not revoked).",
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
    doc: 'Allow a plain-http upstream (`true`, with a warning at start), for example when a sidecar on the same host adds the TLS. Default: allowed for loopback hosts outside production; any other plain-http issuer is refused at start.',
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
  DEVICEGATE_DEVICE_KEY_PREVIOUS: {
    schema: optionalString.pipe(z.string().min(16, 'must be at least 16 characters').optional()),
    doc: 'The fleet key being rotated out: during a rotation, passwords derived from it are accepted beside those of `DEVICEGATE_DEVICE_KEY` (logged per device, counted in `devicegate_previous_key_connects_total`). Remove it once that counter stops growing (README, "Rotating the fleet key").',
  },
  DEVICEGATE_DEVICE_AUTH: {
    schema: z.enum(['hmac', 'cert', 'none']).default('hmac'),
    doc: '`hmac` checks device passwords (on every listener, TLS too); `cert` identifies a device by the certificate it presents on the TLS listener (subject CN = device id = client id, no password; needs `DEVICEGATE_MQTT_TLS_CA`; devices without a verified certificate — plain TCP, WebSocket — are refused); `none` accepts any device (demos only; refused in production).',
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
  DEVICEGATE_USER_CODE_LENGTH: {
    schema: z.coerce
      .number()
      .int()
      .min(MIN_USER_CODE_LENGTH)
      .max(MAX_USER_CODE_LENGTH)
      .default(DEFAULT_USER_CODE_LENGTH),
    doc: 'Bridge mode: letters per user code (8 to 12, shown in groups of four: `XXXX-XXXX-XX`). Each letter multiplies the code space by 20, and the default failed-entry limits grow with it; a scanned `verification_uri_complete` is never limited.',
  },
  DEVICEGATE_LIVE_CODES: {
    schema: z.coerce.number().int().min(1).max(10_000_000).default(250),
    doc: 'Bridge mode: how many codes you expect to be live at once. The default global limit on failed code entries is derived from it, the code space (20^`DEVICEGATE_USER_CODE_LENGTH`) and `DEVICEGATE_CODE_TTL` so that guessing any live code within its lifetime stays below 10^-6.',
  },
  DEVICEGATE_CODE_ENTRY_LIMIT_GLOBAL: {
    schema: z.coerce.number().int().min(1).max(100_000).optional(),
    doc: 'Failed typed code entries per minute over all clients and instances (RFC 8628 §5.1). Default: floor(10^-6 × 20^L × 60 / (`DEVICEGATE_CODE_TTL` × `DEVICEGATE_LIVE_CODES`)) with L = `DEVICEGATE_USER_CODE_LENGTH`, at least 1 — 10 with the defaults.',
  },
  DEVICEGATE_CODE_ENTRY_LIMIT_IP: {
    schema: z.coerce.number().int().min(1).max(1000).optional(),
    doc: 'Failed code entries per minute per client address (IPv6: per /64). Default: 5, or the global limit when that is lower.',
  },
  DEVICEGATE_APPROVALS_PER_PERSON: {
    schema: z.coerce.number().int().min(0).max(100_000).default(20),
    doc: "Devices one person may approve per clock hour, over all instances; the person is the `sub` of the upstream's ID token. Bridge mode always asks for `openid` while the cap is on and refuses a sign-in that names no person (set 0 for an upstream without ID tokens); relay mode counts only token answers that carry an ID token. Over the cap the device gets `access_denied` instead of the token, and in bridge mode the page says why. 0 = no cap.",
  },
  DEVICEGATE_DEMO_PORT: {
    schema: port.default(8081),
    doc: 'Port of the built-in demo identity provider (only when no upstream is configured); 0 picks one.',
  },
  DEVICEGATE_DEMO_LAN: {
    schema: bool.default(true),
    doc: 'Demo only: advertise (and bind) the first LAN IPv4 address of this machine, so that a phone on the same network can open the page, the QR code and the demo identity provider. `false` keeps the demo on localhost (so does `DEVICEGATE_HTTP_PORT=0`); `DEVICEGATE_PUBLIC_URL` always wins. Configured gateways never do this.',
  },
  DEVICEGATE_LOG_LEVEL: {
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    doc: 'Log level. Tokens, device codes, user codes and secrets are never logged at any level.',
  },
  NODE_ENV: {
    schema: optionalString,
    doc: '`production` refuses demo defaults (the demo upstream, the demo device key, `DEVICEGATE_DEVICE_AUTH=none`, a random secret), a public URL that is not https, a plain-http upstream unless explicitly allowed, a plain MQTT listener on an address other than loopback unless `DEVICEGATE_MQTT_ALLOW_PLAINTEXT=true`, and a Redis whose `maxmemory-policy` is not `noeviction`.',
  },
} as const;

type Entries = typeof entries;
const shape = Object.fromEntries(Object.entries(entries).map(([k, v]) => [k, v.schema])) as {
  [K in keyof Entries]: Entries[K]['schema'];
};
/** The schema of the whole environment the gateway reads; one `safeParse` reports every malformed variable. */
export const envSchema = z.object(shape);
/** The parsed environment: defaults applied, strings coerced. */
export type Env = z.output<typeof envSchema>;

/** The names of the variables in the table, in table order. */
export const variableNames: readonly string[] = Object.keys(entries);

/** `DEVICEGATE_UPSTREAM_MODE`, or its default, which depends on whether an upstream is configured (see its doc). */
export function upstreamMode(e: Env): UpstreamMode {
  return (
    e.DEVICEGATE_UPSTREAM_MODE ??
    (e.DEVICEGATE_UPSTREAM_ISSUER !== undefined ? 'device' : 'authorization_code')
  );
}

/** The variables, their defaults and their meaning, for the README table. */
export const configDocs: ReadonlyArray<{ name: string; doc: string; default?: string }> = Object.entries(
  entries,
).map(([name, e]) => {
  const parsed = e.schema.safeParse(undefined);
  const def = parsed.success && parsed.data !== undefined ? String(parsed.data) : undefined;
  return def === undefined ? { name, doc: e.doc } : { name, doc: e.doc, default: def };
});

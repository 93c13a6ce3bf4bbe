/**
 * The rules that span several variables, each a function from the parsed environment to the problems it finds (empty
 * when none), so that `loadConfig` reports all of them in one pass. Each rule names the variables it reads: when one
 * of them is malformed (the schema already reported it), the rule is skipped rather than run on a default the
 * operator never chose. Rules on one variable alone live in its schema (./schema.ts).
 */
import { readClientKey } from './client-key.ts';
import { type Env, upstreamMode } from './schema.ts';
import { readTlsFiles } from './tls-files.ts';

interface Rule {
  /** the variables the rule reads */
  readonly reads: ReadonlyArray<keyof Env>;
  readonly check: (e: Env) => string[];
}

/**
 * Every cross-variable problem of `e`, in the order the rules below are listed. `malformed` names the variables the
 * schema refused (their value in `e` is the default); the rules that read any of them are skipped.
 */
export function crossVariableProblems(e: Env, malformed: ReadonlySet<string> = new Set()): string[] {
  return rules.filter((r) => !r.reads.some((name) => malformed.has(name))).flatMap((r) => r.check(e));
}

/**
 * Whether the upstream may be reached over plain http: the operator's explicit word
 * (`DEVICEGATE_ALLOW_INSECURE_UPSTREAM`), else only a loopback issuer outside production. The one rule both the
 * start-time check below and the upstream client (src/gateway/wiring.ts) follow, so an issuer the client would refuse
 * never gets past `loadConfig`.
 */
export function plainHttpUpstreamAllowed(o: {
  explicit: boolean | undefined;
  production: boolean;
  issuer: string;
}): boolean {
  return o.explicit ?? (!o.production && isLoopback(o.issuer));
}

function isLoopback(url: string): boolean {
  return isLoopbackHost(new URL(url).hostname);
}

/** A host name or address only this machine reaches (a URL's `[::1]` included). */
function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || host.startsWith('127.');
}

/** The endpoint variables, and the ones each mode needs to do without discovery. */
const ENDPOINT_VARIABLES = [
  'DEVICEGATE_UPSTREAM_DEVICE_AUTHORIZATION_ENDPOINT',
  'DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT',
  'DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT',
  'DEVICEGATE_UPSTREAM_REVOCATION_ENDPOINT',
] as const satisfies ReadonlyArray<keyof Env>;

/**
 * Warnings about a configuration that works but is risky, for `config check` and the start-up log: today, an admin
 * token sent over plain HTTP to a non-loopback address.
 */
export function configWarnings(c: {
  readonly admin?: { readonly host: string; readonly token?: string };
}): string[] {
  const admin = c.admin;
  if (admin?.token === undefined || isLoopbackHost(admin.host)) return [];
  return [
    `DEVICEGATE_ADMIN_HOST is ${admin.host}: the admin token crosses the network in plain HTTP; bind it to loopback or keep it on a private network`,
  ];
}

const rules: readonly Rule[] = [
  // The admin API lives on the operations port only, and that port is not the public one.
  {
    reads: ['DEVICEGATE_ADMIN_PORT', 'DEVICEGATE_ADMIN_TOKEN', 'DEVICEGATE_HTTP_PORT'],
    check(e) {
      const port = e.DEVICEGATE_ADMIN_PORT;
      if (port === undefined) {
        return e.DEVICEGATE_ADMIN_TOKEN === undefined
          ? []
          : ['DEVICEGATE_ADMIN_TOKEN: the admin API lives on the operations port; set DEVICEGATE_ADMIN_PORT'];
      }
      return port !== 0 && port === e.DEVICEGATE_HTTP_PORT
        ? ['DEVICEGATE_ADMIN_PORT: must differ from DEVICEGATE_HTTP_PORT']
        : [];
    },
  },
  // The upstream issuer and the gateway's client id there come together or not at all.
  {
    reads: ['DEVICEGATE_UPSTREAM_ISSUER', 'DEVICEGATE_UPSTREAM_CLIENT_ID'],
    check(e) {
      const issuerSet = e.DEVICEGATE_UPSTREAM_ISSUER !== undefined;
      const clientIdSet = e.DEVICEGATE_UPSTREAM_CLIENT_ID !== undefined;
      if (issuerSet && !clientIdSet) {
        return ['DEVICEGATE_UPSTREAM_CLIENT_ID: required when DEVICEGATE_UPSTREAM_ISSUER is set'];
      }
      if (!issuerSet && clientIdSet) {
        return ['DEVICEGATE_UPSTREAM_ISSUER: required when DEVICEGATE_UPSTREAM_CLIENT_ID is set'];
      }
      return [];
    },
  },
  // `NODE_ENV=production` refuses every demo default: demo upstream, no device auth, demo device key, random secret.
  {
    reads: [
      'NODE_ENV',
      'DEVICEGATE_UPSTREAM_ISSUER',
      'DEVICEGATE_DEVICE_AUTH',
      'DEVICEGATE_DEVICE_KEY',
      'DEVICEGATE_SECRET',
    ],
    check(e) {
      if (e.NODE_ENV !== 'production') return [];
      const problems: string[] = [];
      if (e.DEVICEGATE_UPSTREAM_ISSUER === undefined) {
        problems.push('DEVICEGATE_UPSTREAM_ISSUER: required in production (no demo upstream)');
      }
      if (e.DEVICEGATE_DEVICE_AUTH === 'none')
        problems.push('DEVICEGATE_DEVICE_AUTH: "none" is refused in production');
      if (e.DEVICEGATE_DEVICE_AUTH === 'hmac' && e.DEVICEGATE_DEVICE_KEY === undefined) {
        problems.push('DEVICEGATE_DEVICE_KEY: required in production');
      }
      if (e.DEVICEGATE_SECRET === undefined) problems.push('DEVICEGATE_SECRET: required in production');
      return problems;
    },
  },
  // In production people type codes and sign in through the public URL, and the OAuth redirect URI is built from it
  // (RFC 9700 §4.1.1 wants TLS for redirect URIs; a cookie set over http can be read and planted on the path).
  {
    reads: ['NODE_ENV', 'DEVICEGATE_PUBLIC_URL'],
    check(e) {
      if (e.NODE_ENV !== 'production') return [];
      const url = e.DEVICEGATE_PUBLIC_URL;
      if (url === undefined) return ['DEVICEGATE_PUBLIC_URL: required in production (an https URL)'];
      return new URL(url).protocol === 'https:' ? [] : ['DEVICEGATE_PUBLIC_URL: must be https in production'];
    },
  },
  // A plain-http issuer the upstream client would refuse is refused here, at start, instead of looping in discovery.
  {
    reads: ['NODE_ENV', 'DEVICEGATE_UPSTREAM_ISSUER', 'DEVICEGATE_ALLOW_INSECURE_UPSTREAM'],
    check(e) {
      const issuer = e.DEVICEGATE_UPSTREAM_ISSUER;
      if (issuer === undefined || new URL(issuer).protocol !== 'http:') return [];
      const production = e.NODE_ENV === 'production';
      if (plainHttpUpstreamAllowed({ explicit: e.DEVICEGATE_ALLOW_INSECURE_UPSTREAM, production, issuer }))
        return [];
      return [
        `DEVICEGATE_UPSTREAM_ISSUER: plain http is refused${production ? ' in production' : ' for a host other than loopback'} (set DEVICEGATE_ALLOW_INSECURE_UPSTREAM=true to allow it)`,
      ];
    },
  },
  // Configured endpoints replace discovery only as a whole: the ones the mode needs, each over an acceptable scheme.
  {
    reads: [
      'NODE_ENV',
      'DEVICEGATE_UPSTREAM_MODE',
      'DEVICEGATE_UPSTREAM_ISSUER',
      'DEVICEGATE_ALLOW_INSECURE_UPSTREAM',
      ...ENDPOINT_VARIABLES,
    ],
    check: endpointProblems,
  },
  // The client authentication method and the credential it sends come together.
  {
    reads: [
      'DEVICEGATE_UPSTREAM_AUTH_METHOD',
      'DEVICEGATE_UPSTREAM_CLIENT_SECRET',
      'DEVICEGATE_UPSTREAM_CLIENT_KEY',
    ],
    check: authMethodProblems,
  },
  // Instances sharing a Redis must unseal each other's flows, so a random per-start secret cannot do.
  {
    reads: ['DEVICEGATE_REDIS_URL', 'DEVICEGATE_SECRET'],
    check: (e) =>
      e.DEVICEGATE_REDIS_URL !== undefined && e.DEVICEGATE_SECRET === undefined
        ? ['DEVICEGATE_SECRET: required with DEVICEGATE_REDIS_URL (every instance must share it)']
        : [],
  },
  // The gateway's broker credentials mean nothing to the embedded broker.
  {
    reads: ['DEVICEGATE_MQTT_URL', 'DEVICEGATE_MQTT_USERNAME', 'DEVICEGATE_MQTT_PASSWORD'],
    check: (e) =>
      e.DEVICEGATE_MQTT_URL === undefined && (e.DEVICEGATE_MQTT_USERNAME ?? e.DEVICEGATE_MQTT_PASSWORD)
        ? ['DEVICEGATE_MQTT_USERNAME: only used with DEVICEGATE_MQTT_URL']
        : [],
  },
  // The embedded broker (aedes) speaks MQTT 3.1.1 only; the version is that of the gateway's external connection.
  {
    reads: ['DEVICEGATE_MQTT_URL', 'DEVICEGATE_MQTT_PROTOCOL_VERSION'],
    check: (e) =>
      e.DEVICEGATE_MQTT_URL === undefined && e.DEVICEGATE_MQTT_PROTOCOL_VERSION === 5
        ? ['DEVICEGATE_MQTT_PROTOCOL_VERSION: only used with DEVICEGATE_MQTT_URL']
        : [],
  },
  // The TLS listener belongs to the embedded broker and needs a certificate and its key.
  {
    reads: [
      'DEVICEGATE_MQTT_URL',
      'DEVICEGATE_MQTT_TLS_CERT',
      'DEVICEGATE_MQTT_TLS_KEY',
      'DEVICEGATE_MQTT_TLS_CA',
      'DEVICEGATE_MQTT_TLS_HOST',
    ],
    check: tlsProblems,
  },
  // Certificate identity needs certificates verified by a CA the operator chose, on the embedded broker.
  {
    reads: ['DEVICEGATE_DEVICE_AUTH', 'DEVICEGATE_MQTT_URL', 'DEVICEGATE_MQTT_TLS_CA'],
    check: (e) =>
      e.DEVICEGATE_DEVICE_AUTH === 'cert' &&
      (e.DEVICEGATE_MQTT_URL !== undefined || e.DEVICEGATE_MQTT_TLS_CA === undefined)
        ? [
            'DEVICEGATE_DEVICE_AUTH: "cert" needs the embedded broker with DEVICEGATE_MQTT_TLS_CERT, _KEY and _CA (the CA that signs the device certificates)',
          ]
        : [],
  },
  // In production a relay on the path must not read device passwords and tokens: the plain listener stays on loopback
  // unless the operator says a load balancer in front of it does the TLS.
  {
    reads: ['NODE_ENV', 'DEVICEGATE_MQTT_URL', 'DEVICEGATE_MQTT_HOST', 'DEVICEGATE_MQTT_ALLOW_PLAINTEXT'],
    check: (e) =>
      e.NODE_ENV === 'production' &&
      e.DEVICEGATE_MQTT_URL === undefined &&
      !e.DEVICEGATE_MQTT_ALLOW_PLAINTEXT &&
      !isLoopbackHost(e.DEVICEGATE_MQTT_HOST)
        ? [
            `DEVICEGATE_MQTT_HOST: a plaintext MQTT listener on ${e.DEVICEGATE_MQTT_HOST} is refused in production; bind it to 127.0.0.1 and serve devices over TLS (DEVICEGATE_MQTT_TLS_CERT, _KEY, _HOST), or set DEVICEGATE_MQTT_ALLOW_PLAINTEXT=true if a load balancer in front of it terminates TLS`,
          ]
        : [],
  },
  // The redirect URI registered at the upstream is built from the public URL before any port is bound.
  {
    reads: [
      'DEVICEGATE_UPSTREAM_MODE',
      'DEVICEGATE_UPSTREAM_ISSUER',
      'DEVICEGATE_HTTP_PORT',
      'DEVICEGATE_PUBLIC_URL',
    ],
    check: (e) =>
      upstreamMode(e) === 'authorization_code' &&
      e.DEVICEGATE_HTTP_PORT === 0 &&
      e.DEVICEGATE_PUBLIC_URL === undefined
        ? ['DEVICEGATE_PUBLIC_URL: required in bridge mode when DEVICEGATE_HTTP_PORT is 0']
        : [],
  },
];

function endpointProblems(e: Env): string[] {
  const set = ENDPOINT_VARIABLES.filter((name) => e[name] !== undefined);
  if (set.length === 0) return [];
  if (e.DEVICEGATE_UPSTREAM_ISSUER === undefined) {
    return [
      'DEVICEGATE_UPSTREAM_ISSUER: required with the upstream endpoint variables (it names the upstream)',
    ];
  }
  const relay = upstreamMode(e) === 'device';
  const problems: string[] = [];
  const needed = relay
    ? (['DEVICEGATE_UPSTREAM_DEVICE_AUTHORIZATION_ENDPOINT', 'DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT'] as const)
    : (['DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT', 'DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT'] as const);
  for (const name of needed) {
    if (e[name] === undefined) {
      problems.push(
        `${name}: required with ${set.join(', ')} (configured endpoints replace discovery as a whole)`,
      );
    }
  }
  const unused = relay
    ? 'DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT'
    : 'DEVICEGATE_UPSTREAM_DEVICE_AUTHORIZATION_ENDPOINT';
  if (e[unused] !== undefined) problems.push(`${unused}: not used in ${upstreamMode(e)} mode`);
  const production = e.NODE_ENV === 'production';
  for (const name of set) {
    const url = e[name]!;
    if (new URL(url).protocol !== 'http:') continue;
    if (plainHttpUpstreamAllowed({ explicit: e.DEVICEGATE_ALLOW_INSECURE_UPSTREAM, production, issuer: url }))
      continue;
    problems.push(`${name}: plain http is refused (set DEVICEGATE_ALLOW_INSECURE_UPSTREAM=true to allow it)`);
  }
  return problems;
}

function authMethodProblems(e: Env): string[] {
  const secret = e.DEVICEGATE_UPSTREAM_CLIENT_SECRET !== undefined;
  const keyPath = e.DEVICEGATE_UPSTREAM_CLIENT_KEY;
  const method = e.DEVICEGATE_UPSTREAM_AUTH_METHOD ?? (secret ? 'client_secret_basic' : 'none');
  const problems: string[] = [];
  if (method === 'private_key_jwt') {
    if (keyPath === undefined) {
      problems.push(
        'DEVICEGATE_UPSTREAM_CLIENT_KEY: required with DEVICEGATE_UPSTREAM_AUTH_METHOD=private_key_jwt',
      );
    } else {
      try {
        readClientKey(keyPath);
      } catch (err) {
        problems.push(`DEVICEGATE_UPSTREAM_CLIENT_KEY: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  } else if (keyPath !== undefined) {
    problems.push(
      'DEVICEGATE_UPSTREAM_CLIENT_KEY: only used with DEVICEGATE_UPSTREAM_AUTH_METHOD=private_key_jwt',
    );
  }
  const wantsSecret = method === 'client_secret_basic' || method === 'client_secret_post';
  if (wantsSecret && !secret) {
    problems.push(
      `DEVICEGATE_UPSTREAM_CLIENT_SECRET: required with DEVICEGATE_UPSTREAM_AUTH_METHOD=${method}`,
    );
  }
  if (!wantsSecret && secret) {
    problems.push(
      `DEVICEGATE_UPSTREAM_CLIENT_SECRET: not sent with DEVICEGATE_UPSTREAM_AUTH_METHOD=${method}`,
    );
  }
  return problems;
}

function tlsProblems(e: Env): string[] {
  const certFile = e.DEVICEGATE_MQTT_TLS_CERT;
  const keyFile = e.DEVICEGATE_MQTT_TLS_KEY;
  const others = (['DEVICEGATE_MQTT_TLS_CA', 'DEVICEGATE_MQTT_TLS_HOST'] as const).filter(
    (name) => e[name] !== undefined,
  );
  if (certFile === undefined && keyFile === undefined) {
    return others.map(
      (name) => `${name}: only used with DEVICEGATE_MQTT_TLS_CERT and DEVICEGATE_MQTT_TLS_KEY`,
    );
  }
  if (e.DEVICEGATE_MQTT_URL !== undefined) {
    return [
      "DEVICEGATE_MQTT_TLS_CERT: the TLS listener is the embedded broker's; unused with DEVICEGATE_MQTT_URL",
    ];
  }
  if (certFile === undefined) return ['DEVICEGATE_MQTT_TLS_CERT: required with DEVICEGATE_MQTT_TLS_KEY'];
  if (keyFile === undefined) return ['DEVICEGATE_MQTT_TLS_KEY: required with DEVICEGATE_MQTT_TLS_CERT'];
  try {
    const caFile = e.DEVICEGATE_MQTT_TLS_CA;
    readTlsFiles({ certFile, keyFile, ...(caFile !== undefined && { caFile }) });
    return [];
  } catch (err) {
    return [err instanceof Error ? err.message : String(err)];
  }
}

/**
 * docker-compose.yml, checked without Docker (no Docker engine runs in this project's CI): Debian's
 * `docker-compose config` resolves the file with an .env holding exactly the variables deploy/setup.sh writes, each
 * gateway service's environment goes through the real config schema (`loadConfig`), and the stack's wiring is checked
 * against the files it mounts: deploy/mosquitto, deploy/nginx, and Keycloak's realm deploy/keycloak. What runs
 * without Docker runs for real: a gateway with a compose gateway's environment reaches the shipped Mosquitto config
 * over TLS (the CA through NODE_EXTRA_CA_CERTS, as in the stack). Keycloak and nginx do not run here.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type Config, loadConfig } from '../../src/config/index.ts';
import { startDemoIdp } from '../../src/demo/idp.ts';
import { createLogger } from '../../src/observability/log.ts';
import { CALLBACK_PATH } from '../../src/web/routes/decision.ts';
import { makeTestCerts } from '../helpers/certs.ts';
import { startGatewayProcess, stopAllGateways } from '../helpers/gateway-process.ts';
import { startRedis, stopAll } from '../helpers/procs.ts';
import { GATEWAY_PASSWORD, startBroker } from './cluster.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const repoPath = (...p: string[]) => path.join(REPO, ...p);

interface Service {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  environment?: Record<string, string | null>;
  volumes?: string[];
  depends_on?: Record<string, unknown>;
  stop_grace_period?: string;
  ports?: Array<{ published: number | string; target: number }>;
  networks?: Record<string, { aliases?: string[] } | null>;
}
interface ComposeFile {
  services: Record<string, Service>;
}

const PUBLIC_HOST = 'devices.example.com';

/** The variables deploy/setup.sh writes into .env (`ensure NAME ...`, and PUBLIC_HOST), with test values. */
async function setupEnv(): Promise<Record<string, string>> {
  const script = await readFile(repoPath('deploy', 'setup.sh'), 'utf8');
  const names = [...script.matchAll(/^ensure ([A-Z_]+) /gm)].map((m) => m[1]!);
  expect(names.length).toBeGreaterThan(4);
  return {
    PUBLIC_HOST,
    ...Object.fromEntries(names.map((n) => [n, `test-${n.toLowerCase()}-0123456789abcdef`])),
  };
}

let dir: string;

/** `docker-compose config` with `env` as the .env file and nothing else in its environment. */
async function composeConfig(env: Record<string, string>): Promise<{ ok: boolean; out: string }> {
  const envFile = path.join(dir, `env-${Object.keys(env).length}`);
  await writeFile(
    envFile,
    Object.entries(env)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
  );
  const args = ['--env-file', envFile, '-f', repoPath('docker-compose.yml'), 'config'];
  return new Promise((resolve) => {
    execFile(
      'docker-compose',
      args,
      { cwd: REPO, env: { PATH: process.env.PATH ?? '' } },
      (err, stdout, stderr) => resolve({ ok: err === null, out: err === null ? stdout : stderr }),
    );
  });
}

let env: Record<string, string>;
let compose: ComposeFile;
let gateways: Array<[string, Service]>;
let configs: Map<string, Config>;
let mosquittoConf: string;
let acl: string;
let nginxConf: string;

const gatewayEnv = (s: Service) =>
  Object.fromEntries(Object.entries(s.environment!).map(([k, v]) => [k, String(v)]));

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'dg-compose-'));
  env = await setupEnv();
  const resolved = await composeConfig(env);
  expect(resolved.out, 'docker-compose config').not.toMatch(/^ERROR/m);
  expect(resolved.ok, resolved.out).toBe(true);
  compose = parse(resolved.out) as ComposeFile;
  gateways = Object.entries(compose.services).filter(
    ([, s]) => s.environment?.DEVICEGATE_MQTT_URL !== undefined,
  );
  configs = new Map(gateways.map(([name, s]) => [name, loadConfig(gatewayEnv(s))]));
  [mosquittoConf, acl, nginxConf] = await Promise.all([
    readFile(repoPath('deploy', 'mosquitto', 'mosquitto.conf'), 'utf8'),
    readFile(repoPath('deploy', 'mosquitto', 'acl'), 'utf8'),
    readFile(repoPath('deploy', 'nginx', 'devicegate.conf'), 'utf8'),
  ]);
}, 30_000);

afterAll(async () => {
  await stopAllGateways();
  await stopAll();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function confValue(key: string): string | undefined {
  return new RegExp(`^${key}\\s+(.+)$`, 'm').exec(mosquittoConf)?.[1]?.trim();
}

/** A service's bind mounts, container path → host path relative to the repository. */
function mounts(service: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of compose.services[service]?.volumes ?? []) {
    const [source = '', target = ''] = v.split(':');
    if (source.startsWith('/')) out.set(target, path.relative(REPO, source));
  }
  return out;
}

const service = (name: string): Service => {
  const s = compose.services[name];
  if (s === undefined) throw new Error(`docker-compose.yml has no service ${name}`);
  return s;
};

describe('docker-compose.yml', () => {
  it('refuses to start without the secrets it names (${VAR:?...})', async () => {
    const { DEVICEGATE_SECRET: _left, ...without } = env;
    const r = await composeConfig(without);
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/DEVICEGATE_SECRET/);
    expect(r.out).toContain('run deploy/setup.sh');
  });

  it('has at least two gateway services built from the x-gateway anchor, each with a valid production config', () => {
    expect(gateways.length).toBeGreaterThanOrEqual(2);
    for (const [name, s] of gateways) {
      expect(s.build, name).toBeDefined();
      expect(Object.keys(s.depends_on ?? {}), name).toEqual(expect.arrayContaining(['redis', 'mosquitto']));
      const c = configs.get(name)!;
      expect(c.production, name).toBe(true);
      expect(c.mqtt, name).toMatchObject({ kind: 'external', url: 'mqtts://mosquitto:8883' });
      expect(c.redis?.url, name).toBe('redis://redis:6379');
      expect(c.http.host, name).toBe('0.0.0.0');
      expect(c.mode, name).toBe('authorization_code');
      expect(c.publicUrl, name).toBe(`https://${PUBLIC_HOST}:8443`);
      // relay mode, the one-line switch the file's header names, is a valid configuration too
      expect(loadConfig({ ...gatewayEnv(s), DEVICEGATE_UPSTREAM_MODE: 'device' }).mode).toBe('device');
    }
  });

  it('lets every gateway verify Mosquitto and Keycloak with the CA deploy/gen-certs.sh makes', () => {
    for (const [name, s] of gateways) {
      const ca = s.environment?.NODE_EXTRA_CA_CERTS;
      expect(ca, name).toBeDefined();
      expect(mounts(name).get(ca!), name).toBe(path.join('deploy', 'certs', 'ca.crt'));
    }
  });

  it('gives every gateway the same secret, fleet key, Redis and broker', () => {
    const shared = (c: Config) => [c.secret, c.deviceKey, c.redis?.url, c.keyPrefix, c.topicPrefix, c.mode];
    const first = shared(configs.get(gateways[0]![0])!);
    for (const [name] of gateways) expect(shared(configs.get(name)!), name).toEqual(first);
  });

  it('gives every gateway its own MQTT client id and username, each with a gateway block in deploy/mosquitto/acl', () => {
    const ids = gateways.map(([name]) => configs.get(name)!.mqtt);
    const clientIds = ids.map((m) => (m.kind === 'external' ? m.clientId : undefined));
    const usernames = ids.map((m) => (m.kind === 'external' ? m.username : undefined));
    expect(new Set(clientIds).size).toBe(gateways.length);
    // Mosquitto runs with use_username_as_clientid: the username is the client id that counts
    expect(new Set(usernames).size).toBe(gateways.length);
    const prefix = configs.get(gateways[0]![0])!.topicPrefix;
    for (const user of usernames) {
      expect(user).toBeDefined();
      expect(acl).toContain(`user ${user}\ntopic read ${prefix}/+/req/+\ntopic write ${prefix}/+/res/#\n`);
    }
    expect(acl).toContain(`pattern write ${prefix}/%u/req/+`);
    // `res/#`: `res` and below it, where an MQTT 5 Response Topic may point (src/transport/topics.ts)
    expect(acl).toContain(`pattern read ${prefix}/%u/res/#\n`);
  });

  it('lets a gateway finish its graceful shutdown (main.ts forces exit after 15 s) before Docker kills it', () => {
    for (const [name, s] of gateways) {
      const grace = /^(\d+)s$/.exec(s.stop_grace_period ?? '10s');
      expect(Number(grace?.[1]), name).toBeGreaterThan(15);
    }
  });

  it('runs Redis with AOF and noeviction', () => {
    const command = service('redis').command;
    const args = Array.isArray(command) ? command : String(command).split(/\s+/);
    expect(args.join(' ')).toContain('--appendonly yes');
    expect(args.join(' ')).toContain('--maxmemory-policy noeviction');
  });
});

describe('Mosquitto in docker-compose.yml', () => {
  it('mounts the deploy/mosquitto config, ACL, passwords and certificates where mosquitto.conf looks for them', () => {
    const m = mounts('mosquitto');
    expect(m.get('/mosquitto/config/mosquitto.conf')).toBe(
      path.join('deploy', 'mosquitto', 'mosquitto.conf'),
    );
    expect(m.get(confValue('acl_file')!)).toBe(path.join('deploy', 'mosquitto', 'acl'));
    expect(m.get(confValue('password_file')!)).toBe(path.join('deploy', 'mosquitto', 'passwords'));
    // deploy/setup.sh copies deploy/gen-certs.sh's server pair there, owned by the image's user
    for (const key of ['cafile', 'certfile', 'keyfile']) {
      const file = confValue(key)!;
      expect(m.get(path.dirname(file)), key).toBe(path.join('deploy', 'mosquitto', 'certs'));
    }
  });

  it('listens with TLS only, on the port the gateways and devices use', () => {
    const listeners = [...mosquittoConf.matchAll(/^listener\s+(\d+)/gm)].map((l) => Number(l[1]));
    expect(listeners).toEqual([8883]);
    expect(service('mosquitto').ports).toEqual([expect.objectContaining({ target: 8883 })]);
    for (const [name] of gateways) expect(configs.get(name)!.mqtt, name).toMatchObject({ url: /:8883$/ });
  });

  it('configures Mosquitto as the device contract needs it', () => {
    expect(confValue('allow_anonymous')).toBe('false');
    // a client id can never be used to take over another device's session
    expect(confValue('use_username_as_clientid')).toBe('true');
    // replies and requests are never retained
    expect(confValue('retain_available')).toBe('false');
    expect(confValue('set_tcp_nodelay')).toBe('true');
  });
});

interface RealmClient {
  clientId: string;
  enabled?: boolean;
  publicClient?: boolean;
  secret?: string;
  standardFlowEnabled?: boolean;
  implicitFlowEnabled?: boolean;
  directAccessGrantsEnabled?: boolean;
  redirectUris?: string[];
  attributes?: Record<string, string>;
}
interface Realm {
  realm: string;
  enabled: boolean;
  clients: RealmClient[];
  users: Array<{
    username: string;
    enabled?: boolean;
    credentials?: Array<{ type: string; temporary?: boolean }>;
  }>;
}

describe('Keycloak in docker-compose.yml', () => {
  let realmText: string;
  let realm: Realm;
  let keycloak: Service;
  /** Keycloak resolves `${NAME}` in the realm file from its own environment at import. */
  const resolve = (value: string) =>
    value.replace(/\$\{([A-Z_]+)\}/g, (_m, name: string) => String(keycloak.environment?.[name]));

  beforeAll(async () => {
    keycloak = service('keycloak');
    const realmFile = [...mounts('keycloak')].find(([target]) =>
      target.startsWith('/opt/keycloak/data/import/'),
    );
    expect(realmFile?.[1]).toBe(path.join('deploy', 'keycloak', 'realm-devicegate.json'));
    realmText = await readFile(repoPath(realmFile![1]), 'utf8');
    realm = JSON.parse(realmText) as Realm;
  });

  it('imports the realm at start, and every placeholder of the realm file is in its environment', () => {
    expect(keycloak.command).toContain('--import-realm');
    for (const [, name] of realmText.matchAll(/\$\{([A-Za-z_]+)\}/g)) {
      expect(keycloak.environment?.[name!], name).toEqual(expect.any(String));
    }
  });

  it('advertises the issuer every gateway is configured with', () => {
    expect(realm.enabled).toBe(true);
    const issuer = `${keycloak.environment?.KC_HOSTNAME}/realms/${realm.realm}`;
    for (const [name] of gateways) expect(configs.get(name)!.upstream?.issuer, name).toBe(issuer);
  });

  it('has the client `devicegate`: confidential, authorization code with PKCE and the device grant, the callback', () => {
    const client = realm.clients.find((c) => c.clientId === 'devicegate');
    expect(client).toBeDefined();
    expect(client).toMatchObject({ enabled: true, publicClient: false, standardFlowEnabled: true });
    expect(client).toMatchObject({ implicitFlowEnabled: false, directAccessGrantsEnabled: false });
    expect(client?.attributes).toMatchObject({
      'oauth2.device.authorization.grant.enabled': 'true',
      'pkce.code.challenge.method': 'S256',
    });
    for (const [name] of gateways) {
      const c = configs.get(name)!;
      expect(c.upstream?.clientId, name).toBe(client?.clientId);
      expect(c.upstream?.clientSecret, name).toBe(resolve(client?.secret ?? ''));
      // exactly the redirect URI the gateway sends: its public URL and the callback route
      expect(client?.redirectUris?.map(resolve), name).toEqual([`${c.publicUrl}${CALLBACK_PATH}`]);
    }
  });

  it('has a demo user who can sign in with a password that is not temporary', () => {
    const demo = realm.users.find((u) => u.username === 'demo');
    expect(demo?.enabled).toBe(true);
    expect(demo?.credentials).toEqual([expect.objectContaining({ type: 'password', temporary: false })]);
  });
});

describe('the TLS proxy in docker-compose.yml', () => {
  it('serves the page from every gateway on 8443 and Keycloak on 8444, with deploy/gen-certs.sh certificates', () => {
    const proxy = service('proxy');
    expect(proxy.ports?.map((p) => Number(p.published)).sort()).toEqual([8443, 8444]);
    const upstreams = [...nginxConf.matchAll(/^\s*server (\S+):(\d+);/gm)].map((m) => `${m[1]}:${m[2]}`);
    expect(upstreams.sort()).toEqual(
      gateways.map(([name]) => `${name}:${configs.get(name)!.http.port}`).sort(),
    );
    expect(nginxConf).toMatch(/listen 8444 ssl;[\s\S]*proxy_pass http:\/\/keycloak:8080;/);
    const m = mounts('proxy');
    for (const [directive, file] of [
      ['ssl_certificate', 'server.crt'],
      ['ssl_certificate_key', 'server.key'],
    ]) {
      const target = new RegExp(`^\\s*${directive} (\\S+);`, 'm').exec(nginxConf)?.[1];
      expect(m.get(target!), directive).toBe(path.join('deploy', 'certs', file!));
    }
  });

  it('is PUBLIC_HOST inside the network too, so the gateways reach the issuer by its advertised URL', () => {
    expect(service('proxy').networks?.default?.aliases).toEqual([PUBLIC_HOST]);
    for (const [name] of gateways) {
      expect(new URL(configs.get(name)!.upstream!.issuer).host, name).toBe(`${PUBLIC_HOST}:8444`);
    }
  });
});

describe('a gateway with the environment of docker-compose.yml, without Docker', () => {
  it('is ready on Redis and the shipped Mosquitto config over TLS, trusting the CA through NODE_EXTRA_CA_CERTS', async () => {
    const [name, s] = gateways[0]!;
    const certs = await makeTestCerts(dir);
    const broker = await startBroker({ key: env.DEVICEGATE_DEVICE_KEY!, devices: [], tls: certs });
    const redis = await startRedis({ appendonly: true, args: ['--maxmemory-policy', 'noeviction'] });
    const publicUrl = configs.get(name)!.publicUrl!;
    const idp = await startDemoIdp({
      ...{ host: '127.0.0.1', port: 0, redirectUris: [`${publicUrl}${CALLBACK_PATH}`], deviceFlow: false },
      log: createLogger('silent'),
    });
    try {
      // the service names of the compose network become this machine's addresses; everything else stays
      const gw = await startGatewayProcess({
        name,
        // tsx compiles the sources first: on a loaded two-core machine that alone can take 20 s
        timeoutMs: 45_000,
        env: {
          ...gatewayEnv(s),
          NODE_EXTRA_CA_CERTS: certs.ca,
          DEVICEGATE_HTTP_HOST: '127.0.0.1',
          DEVICEGATE_HTTP_PORT: '0',
          DEVICEGATE_MQTT_URL: `mqtts://localhost:${broker.tlsPort}`,
          DEVICEGATE_MQTT_PASSWORD: GATEWAY_PASSWORD,
          DEVICEGATE_REDIS_URL: redis.url,
          DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
          DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
          DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
          // the demo IdP speaks plain http on loopback; Keycloak in the stack is https behind nginx
          DEVICEGATE_ALLOW_INSECURE_UPSTREAM: 'true',
        },
      });
      const ready = await gw.readyz();
      expect(ready.status, JSON.stringify(ready.body)).toBe(200);
      expect(ready.body.checks.broker?.ok).toBe(true);
    } finally {
      await idp.close();
    }
  }, 60_000);
});

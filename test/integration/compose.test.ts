/**
 * docker-compose.yml, checked without Docker: no Docker engine runs in this project's CI, so the file is parsed
 * (anchors and `<<` merges resolved, `${VAR:?message}` substituted with test values) and each gateway service's
 * environment goes through the real config schema (`loadConfig`). The stack's wiring is checked against the
 * deploy/mosquitto files the broker mounts.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type Config, loadConfig } from '../../src/config/index.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  environment?: Record<string, string | number | boolean | null>;
  volumes?: string[];
  depends_on?: string[];
  stop_grace_period?: string;
}
interface ComposeFile {
  services: Record<string, Service>;
}

/** What an operator exports before `docker compose up` (the file's header says which). */
const TEST_VALUES: Record<string, string> = {
  GATEWAY_PASSWORD: 'test-gateway-password',
  UPSTREAM_CLIENT_SECRET: 'test-upstream-client-secret',
  DEVICEGATE_DEVICE_KEY: 'test-fleet-key-0123456789abcdef',
  DEVICEGATE_SECRET: 'test-secret-0123456789abcdef0123456789abcdef',
  KEYCLOAK_ADMIN_PASSWORD: 'test-admin-password',
};

/** Compose's interpolation for the forms the file uses: `${VAR}`, `${VAR:?message}`, `${VAR:-default}`. */
function interpolate(text: string, vars: Record<string, string>): string {
  return text.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}/g,
    (_m, name: string, op, arg: string) => {
      const value = vars[name];
      if (value !== undefined && value !== '') return value;
      if (op === ':-' || op === '-') return arg;
      throw new Error(`${name} is required: ${arg}`);
    },
  );
}

let compose: ComposeFile;
let gateways: Array<[string, Service]>;
let configs: Map<string, Config>;
let mosquittoConf: string;
let acl: string;

beforeAll(async () => {
  const text = await readFile(path.join(REPO, 'docker-compose.yml'), 'utf8');
  compose = parse(interpolate(text, TEST_VALUES), { merge: true }) as ComposeFile;
  gateways = Object.entries(compose.services).filter(
    ([, s]) => s.environment?.DEVICEGATE_MQTT_URL !== undefined,
  );
  configs = new Map(
    gateways.map(([name, s]) => [
      name,
      loadConfig(Object.fromEntries(Object.entries(s.environment!).map(([k, v]) => [k, String(v)]))),
    ]),
  );
  mosquittoConf = await readFile(path.join(REPO, 'deploy', 'mosquitto', 'mosquitto.conf'), 'utf8');
  acl = await readFile(path.join(REPO, 'deploy', 'mosquitto', 'acl'), 'utf8');
});

function confValue(key: string): string | undefined {
  return new RegExp(`^${key}\\s+(.+)$`, 'm').exec(mosquittoConf)?.[1]?.trim();
}

describe('docker-compose.yml', () => {
  it('refuses to start without the secrets it names (${VAR:?...})', async () => {
    const text = await readFile(path.join(REPO, 'docker-compose.yml'), 'utf8');
    expect(() => interpolate(text, { ...TEST_VALUES, DEVICEGATE_SECRET: '' })).toThrow(/DEVICEGATE_SECRET/);
  });

  it('has at least two gateway services built from the x-gateway anchor, each with a valid production config', () => {
    expect(gateways.length).toBeGreaterThanOrEqual(2);
    for (const [name, s] of gateways) {
      expect(s.build, name).toBeDefined();
      expect(s.depends_on, name).toEqual(expect.arrayContaining(['redis', 'mosquitto']));
      const c = configs.get(name)!;
      expect(c.production, name).toBe(true);
      expect(c.mqtt, name).toMatchObject({ kind: 'external', url: 'mqtt://mosquitto:1883' });
      expect(c.redis?.url, name).toBe('redis://redis:6379');
      expect(c.http.host, name).toBe('0.0.0.0');
      expect(c.upstream?.issuer, name).toMatch(/^https:/);
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
    const command = compose.services.redis?.command;
    const args = Array.isArray(command) ? command : String(command).split(/\s+/);
    expect(args.join(' ')).toContain('--appendonly yes');
    expect(args.join(' ')).toContain('--maxmemory-policy noeviction');
  });

  it('mounts the deploy/mosquitto config, ACL and passwords where mosquitto.conf looks for them', () => {
    const volumes = compose.services.mosquitto?.volumes ?? [];
    const target = (source: string) => volumes.find((v) => v.startsWith(`${source}:`))?.split(':')[1];
    expect(target('./deploy/mosquitto/mosquitto.conf')).toBe('/mosquitto/config/mosquitto.conf');
    expect(target('./deploy/mosquitto/acl')).toBe(confValue('acl_file'));
    expect(target('./deploy/mosquitto/passwords')).toBe(confValue('password_file'));
    // the TLS listener's files, as deploy/gen-certs.sh names them
    expect(`${target('./deploy/certs')}/server.crt`).toBe(confValue('certfile'));
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

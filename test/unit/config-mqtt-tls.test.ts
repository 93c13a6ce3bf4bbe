/**
 * `loadConfig` on the device edge's variables: the embedded broker's TLS listener and its files, certificate
 * identity, and the refusal of a plaintext listener on a non-loopback address in production. The certificates are
 * made by deploy/gen-certs.sh (openssl, no network).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
let dir: string;
let other: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'dg-cfg-tls-'));
  other = mkdtempSync(path.join(tmpdir(), 'dg-cfg-tls-other-'));
  for (const d of [dir, other]) execFileSync('bash', [path.join(REPO, 'deploy', 'gen-certs.sh'), d]);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(other, { recursive: true, force: true });
});

const tls = () => ({
  DEVICEGATE_MQTT_TLS_CERT: path.join(dir, 'server.crt'),
  DEVICEGATE_MQTT_TLS_KEY: path.join(dir, 'server.key'),
});

/** A production environment that passes every other rule. */
const PROD = {
  NODE_ENV: 'production',
  DEVICEGATE_PUBLIC_URL: 'https://gw.example',
  DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
  DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
  DEVICEGATE_DEVICE_KEY: 'k'.repeat(32),
  DEVICEGATE_SECRET: 's'.repeat(32),
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('DEVICEGATE_MQTT_TLS_*', () => {
  it('opens a TLS listener on 8883 beside the plain one, on DEVICEGATE_MQTT_HOST unless its own host is set', () => {
    const c = loadConfig(tls());
    expect(c.mqtt).toEqual({
      kind: 'embedded',
      maxPacketSize: 262_144,
      host: '127.0.0.1',
      port: 1883,
      portIsDefault: true,
      tls: {
        host: '127.0.0.1',
        port: 8883,
        certFile: tls().DEVICEGATE_MQTT_TLS_CERT,
        keyFile: tls().DEVICEGATE_MQTT_TLS_KEY,
      },
    });
    const own = loadConfig({
      ...tls(),
      DEVICEGATE_MQTT_TLS_HOST: '0.0.0.0',
      DEVICEGATE_MQTT_TLS_PORT: '0',
      DEVICEGATE_MQTT_TLS_CA: path.join(dir, 'ca.crt'),
    });
    expect(own.mqtt.kind === 'embedded' && own.mqtt.tls).toMatchObject({
      host: '0.0.0.0',
      port: 0,
      caFile: path.join(dir, 'ca.crt'),
    });
    expect(loadConfig({}).mqtt).not.toHaveProperty('tls');
  });

  it('wants the certificate and the key together, and the CA and host only with them', () => {
    expect(problems({ DEVICEGATE_MQTT_TLS_CERT: tls().DEVICEGATE_MQTT_TLS_CERT })).toEqual([
      'DEVICEGATE_MQTT_TLS_KEY: required with DEVICEGATE_MQTT_TLS_CERT',
    ]);
    expect(problems({ DEVICEGATE_MQTT_TLS_KEY: tls().DEVICEGATE_MQTT_TLS_KEY })).toEqual([
      'DEVICEGATE_MQTT_TLS_CERT: required with DEVICEGATE_MQTT_TLS_KEY',
    ]);
    expect(problems({ DEVICEGATE_MQTT_TLS_CA: path.join(dir, 'ca.crt') })).toEqual([
      'DEVICEGATE_MQTT_TLS_CA: only used with DEVICEGATE_MQTT_TLS_CERT and DEVICEGATE_MQTT_TLS_KEY',
    ]);
    expect(problems({ ...tls(), DEVICEGATE_MQTT_URL: 'mqtt://broker:1883' }).join('\n')).toMatch(
      /DEVICEGATE_MQTT_TLS_CERT: .*unused with DEVICEGATE_MQTT_URL/,
    );
  });

  it('reads the files at load: a missing file, a key of another certificate and a non-PEM CA are refused', () => {
    expect(problems({ ...tls(), DEVICEGATE_MQTT_TLS_CERT: path.join(dir, 'nope.crt') })).toEqual([
      `DEVICEGATE_MQTT_TLS_CERT: cannot read ${path.join(dir, 'nope.crt')} (ENOENT)`,
    ]);
    const mismatch = problems({ ...tls(), DEVICEGATE_MQTT_TLS_KEY: path.join(other, 'server.key') });
    expect(mismatch).toHaveLength(1);
    expect(mismatch[0]).toMatch(/^DEVICEGATE_MQTT_TLS_CERT\/_KEY\/_CA: not a usable certificate and key/);
    const junk = path.join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate');
    expect(problems({ ...tls(), DEVICEGATE_MQTT_TLS_CA: junk })).toHaveLength(1);
  });
});

describe('DEVICEGATE_DEVICE_AUTH=cert', () => {
  it('needs the embedded broker with a CA to verify device certificates', () => {
    const needs =
      /DEVICEGATE_DEVICE_AUTH: "cert" needs the embedded broker with DEVICEGATE_MQTT_TLS_CERT, _KEY and _CA/;
    expect(problems({ DEVICEGATE_DEVICE_AUTH: 'cert' }).join('\n')).toMatch(needs);
    expect(problems({ ...tls(), DEVICEGATE_DEVICE_AUTH: 'cert' }).join('\n')).toMatch(needs);
    const c = loadConfig({
      ...tls(),
      DEVICEGATE_MQTT_TLS_CA: path.join(dir, 'ca.crt'),
      DEVICEGATE_DEVICE_AUTH: 'cert',
    });
    expect(c.deviceAuth).toBe('cert');
  });

  it('needs no fleet key in production (no device password is checked)', () => {
    const { DEVICEGATE_DEVICE_KEY: _unused, ...withoutKey } = PROD;
    const env = {
      ...withoutKey,
      ...tls(),
      DEVICEGATE_MQTT_TLS_CA: path.join(dir, 'ca.crt'),
      DEVICEGATE_DEVICE_AUTH: 'cert',
    };
    expect(problems(env)).toEqual([]);
  });
});

describe('a plaintext MQTT listener in production', () => {
  const refusal =
    'DEVICEGATE_MQTT_HOST: a plaintext MQTT listener on 0.0.0.0 is refused in production; bind it to 127.0.0.1 and serve devices over TLS (DEVICEGATE_MQTT_TLS_CERT, _KEY, _HOST), or set DEVICEGATE_MQTT_ALLOW_PLAINTEXT=true if a load balancer in front of it terminates TLS';

  it('is refused on a non-loopback address, saying what to do', () => {
    expect(problems({ ...PROD, DEVICEGATE_MQTT_HOST: '0.0.0.0' })).toEqual([refusal]);
    expect(problems({ ...PROD, DEVICEGATE_MQTT_HOST: '10.1.2.3' }).join('\n')).toMatch(
      /on 10\.1\.2\.3 is refused/,
    );
    expect(problems({ ...PROD, DEVICEGATE_MQTT_HOST: '::' })).toHaveLength(1);
  });

  it('is allowed on loopback, with DEVICEGATE_MQTT_ALLOW_PLAINTEXT=true, outside production, and with an external broker', () => {
    for (const host of ['127.0.0.1', 'localhost', '::1']) {
      expect(problems({ ...PROD, DEVICEGATE_MQTT_HOST: host })).toEqual([]);
    }
    expect(
      problems({ ...PROD, DEVICEGATE_MQTT_HOST: '0.0.0.0', DEVICEGATE_MQTT_ALLOW_PLAINTEXT: 'true' }),
    ).toEqual([]);
    expect(problems({ DEVICEGATE_MQTT_HOST: '0.0.0.0' })).toEqual([]);
    expect(
      problems({ ...PROD, DEVICEGATE_MQTT_HOST: '0.0.0.0', DEVICEGATE_MQTT_URL: 'mqtts://broker:8883' }),
    ).toEqual([]);
  });

  it('is the only listener refused: TLS on every address with the plain one on loopback passes', () => {
    const env = { ...PROD, ...tls(), DEVICEGATE_MQTT_TLS_HOST: '0.0.0.0' };
    expect(problems(env)).toEqual([]);
    expect(problems({ ...env, DEVICEGATE_MQTT_HOST: '0.0.0.0' })).toEqual([refusal]);
  });
});

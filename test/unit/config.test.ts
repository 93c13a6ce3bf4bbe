import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, configDocs, loadConfig } from '../../src/config/index.ts';

describe('loadConfig', () => {
  it('gives the documented defaults with an empty environment (demo)', () => {
    const c = loadConfig({});
    expect(c.http).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.mqtt).toEqual({
      kind: 'embedded',
      host: '127.0.0.1',
      port: 1883,
      portIsDefault: true,
      maxPacketSize: 262_144,
    });
    expect(c.topicPrefix).toBe('devicegate/v1');
    expect(c.upstream).toBeUndefined();
    expect(c.mode).toBe('authorization_code');
    expect(c.codeTtlSeconds).toBe(600);
    expect(c.redis).toBeUndefined();
    expect(c.publicUrl).toBeUndefined();
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('defaults to relay mode when an upstream is configured', () => {
    const c = loadConfig({
      DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
      DEVICEGATE_PUBLIC_URL: 'https://gw.example/',
    });
    expect(c.mode).toBe('device');
    expect(c.upstream).toEqual({ issuer: 'https://idp.example', clientId: 'gw' });
    expect(c.publicUrl).toBe('https://gw.example');
  });

  it('reports every problem at once, naming each variable', () => {
    let err: unknown;
    try {
      loadConfig({
        DEVICEGATE_HTTP_PORT: 'eighty',
        DEVICEGATE_MQTT_PORT: '70000',
        DEVICEGATE_TOPIC_PREFIX: 'devices/#',
        DEVICEGATE_UPSTREAM_MODE: 'implicit',
        DEVICEGATE_CODE_TTL: '5',
        DEVICEGATE_TYPO: 'x',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const text = (err as ConfigError).problems.join('\n');
    for (const name of [
      'DEVICEGATE_HTTP_PORT',
      'DEVICEGATE_MQTT_PORT',
      'DEVICEGATE_TOPIC_PREFIX',
      'DEVICEGATE_UPSTREAM_MODE',
      'DEVICEGATE_CODE_TTL',
      'DEVICEGATE_TYPO',
    ]) {
      expect(text).toContain(name);
    }
  });

  it('refuses demo knobs in production', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', DEVICEGATE_DEVICE_AUTH: 'none' })).toThrow(
      /DEVICEGATE_UPSTREAM_ISSUER[\s\S]*DEVICEGATE_DEVICE_AUTH[\s\S]*DEVICEGATE_SECRET/,
    );
    expect(() =>
      loadConfig({
        NODE_ENV: 'production',
        DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
        DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
        DEVICEGATE_SECRET: 's'.repeat(32),
      }),
    ).toThrow(/DEVICEGATE_DEVICE_KEY/);
  });

  it('reports malformed variables and cross-variable problems together, in one pass', () => {
    let err: unknown;
    try {
      loadConfig({
        DEVICEGATE_HTTP_PORT: 'eighty',
        DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
        DEVICEGATE_REDIS_URL: 'redis://127.0.0.1:6379',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      expect.stringMatching(/^DEVICEGATE_HTTP_PORT: /),
      'DEVICEGATE_UPSTREAM_CLIENT_ID: required when DEVICEGATE_UPSTREAM_ISSUER is set',
      'DEVICEGATE_SECRET: required with DEVICEGATE_REDIS_URL (every instance must share it)',
    ]);
  });

  it('skips the cross-variable rules that read a malformed variable (no problem about a default never chosen)', () => {
    let err: unknown;
    try {
      loadConfig({ DEVICEGATE_HTTP_PORT: '-1', DEVICEGATE_PUBLIC_URL: 'ftp://gw.example' });
    } catch (e) {
      err = e;
    }
    const problems = (err as ConfigError).problems;
    expect(problems).toHaveLength(2);
    expect(problems.join('\n')).not.toContain('required in bridge mode');
  });

  it('requires an https public URL in production', () => {
    const prod = {
      NODE_ENV: 'production',
      DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
      DEVICEGATE_DEVICE_KEY: 'k'.repeat(32),
      DEVICEGATE_SECRET: 's'.repeat(32),
    };
    expect(() => loadConfig(prod)).toThrow(/DEVICEGATE_PUBLIC_URL: required in production/);
    expect(() => loadConfig({ ...prod, DEVICEGATE_PUBLIC_URL: 'http://gw.example' })).toThrow(
      /DEVICEGATE_PUBLIC_URL: must be https in production/,
    );
    expect(loadConfig({ ...prod, DEVICEGATE_PUBLIC_URL: 'https://gw.example' }).publicUrl).toBe(
      'https://gw.example',
    );
  });

  it('refuses at start a plain-http upstream the upstream client would refuse, unless explicitly allowed', () => {
    const prod = {
      NODE_ENV: 'production',
      DEVICEGATE_PUBLIC_URL: 'https://gw.example',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
      DEVICEGATE_DEVICE_KEY: 'k'.repeat(32),
      DEVICEGATE_SECRET: 's'.repeat(32),
    };
    expect(() => loadConfig({ ...prod, DEVICEGATE_UPSTREAM_ISSUER: 'http://127.0.0.1:9000' })).toThrow(
      /DEVICEGATE_UPSTREAM_ISSUER: plain http is refused in production/,
    );
    expect(() =>
      loadConfig({ DEVICEGATE_UPSTREAM_ISSUER: 'http://idp.example', DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw' }),
    ).toThrow(/DEVICEGATE_UPSTREAM_ISSUER: plain http is refused for a host other than loopback/);
    expect(() =>
      loadConfig({
        DEVICEGATE_UPSTREAM_ISSUER: 'http://localhost:9000',
        DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
        DEVICEGATE_ALLOW_INSECURE_UPSTREAM: 'false',
      }),
    ).toThrow(/DEVICEGATE_UPSTREAM_ISSUER: plain http is refused/);
    // loopback outside production, and an explicit yes, are allowed (the gateway warns at start)
    const local = {
      DEVICEGATE_UPSTREAM_ISSUER: 'http://127.0.0.1:9000',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    };
    expect(loadConfig(local).upstream?.issuer).toBe('http://127.0.0.1:9000');
    const allowed = loadConfig({
      ...prod,
      DEVICEGATE_UPSTREAM_ISSUER: 'http://idp.internal',
      DEVICEGATE_ALLOW_INSECURE_UPSTREAM: 'true',
    });
    expect(allowed.allowInsecureUpstream).toBe(true);
  });

  it('requires a shared secret with Redis', () => {
    expect(() => loadConfig({ DEVICEGATE_REDIS_URL: 'redis://127.0.0.1:6379' })).toThrow(/DEVICEGATE_SECRET/);
    const c = loadConfig({
      DEVICEGATE_REDIS_URL: 'redis://127.0.0.1:6379',
      DEVICEGATE_SECRET: 'x'.repeat(32),
    });
    expect(c.redis?.keyPrefix).toBe('devicegate:');
  });

  it('reads a Sentinel URL: the sentinels (port 26379 by default), the master name and its credentials', () => {
    const secret = { DEVICEGATE_SECRET: 'x'.repeat(32) };
    const c = loadConfig({
      ...secret,
      DEVICEGATE_REDIS_URL: 'redis+sentinel://app:p%40ss@s1.example,s2.example:26380,[::1]:5000/flows',
    });
    expect(c.redis?.sentinel).toEqual({
      sentinels: [
        { host: 's1.example', port: 26379 },
        { host: 's2.example', port: 26380 },
        { host: '::1', port: 5000 },
      ],
      name: 'flows',
      username: 'app',
      password: 'p@ss',
    });
    expect(loadConfig({ ...secret, DEVICEGATE_REDIS_URL: 'redis://r:6379' }).redis?.sentinel).toBeUndefined();
    for (const bad of [
      'redis+sentinel://s1:26379',
      'redis+sentinel://s1:26379/',
      'redis+sentinel://s1,,s2/flows',
      'redis+sentinel://s1:port/flows',
      'redis+sentinel://s1/%E0',
      'redis+sentinel://us%E0r:pw@s1/flows',
      'http://r:6379',
    ]) {
      expect(() => loadConfig({ ...secret, DEVICEGATE_REDIS_URL: bad }), bad).toThrow(
        /DEVICEGATE_REDIS_URL: /,
      );
    }
  });

  it('wants the upstream issuer and client id together, and broker credentials only with a broker URL', () => {
    expect(() => loadConfig({ DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example' })).toThrow(
      /DEVICEGATE_UPSTREAM_CLIENT_ID: required when DEVICEGATE_UPSTREAM_ISSUER is set/,
    );
    let err: unknown;
    try {
      loadConfig({
        DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
        DEVICEGATE_MQTT_PASSWORD: 'p',
        DEVICEGATE_TYPO: 'x',
      });
    } catch (e) {
      err = e;
    }
    expect((err as ConfigError).problems).toEqual([
      'DEVICEGATE_TYPO: unknown variable',
      'DEVICEGATE_UPSTREAM_ISSUER: required when DEVICEGATE_UPSTREAM_CLIENT_ID is set',
      'DEVICEGATE_MQTT_USERNAME: only used with DEVICEGATE_MQTT_URL',
    ]);
  });

  it('switches to an external broker with DEVICEGATE_MQTT_URL', () => {
    const c = loadConfig({ DEVICEGATE_MQTT_URL: 'mqtt://broker:1883', DEVICEGATE_MQTT_USERNAME: 'gw' });
    expect(c.mqtt).toEqual({
      kind: 'external',
      url: 'mqtt://broker:1883',
      username: 'gw',
      protocolVersion: 4,
      sharedSubscription: true,
      keepaliveSeconds: 30,
    });
  });

  it('DEVICEGATE_MQTT_KEEPALIVE: seconds of the external connection, 1 to 3600', () => {
    const url = { DEVICEGATE_MQTT_URL: 'mqtt://broker:1883' };
    expect(loadConfig({ ...url, DEVICEGATE_MQTT_KEEPALIVE: '2' }).mqtt).toMatchObject({
      keepaliveSeconds: 2,
    });
    for (const bad of ['0', '3601', 'soon']) {
      expect(() => loadConfig({ ...url, DEVICEGATE_MQTT_KEEPALIVE: bad })).toThrow(
        /DEVICEGATE_MQTT_KEEPALIVE/,
      );
    }
  });

  it('DEVICEGATE_MQTT_PROTOCOL_VERSION: 4 or 5 for the external connection, refused for the embedded broker', () => {
    const url = { DEVICEGATE_MQTT_URL: 'mqtt://broker:1883' };
    expect(loadConfig({ ...url, DEVICEGATE_MQTT_PROTOCOL_VERSION: '5' }).mqtt).toMatchObject({
      protocolVersion: 5,
    });
    expect(loadConfig({ ...url, DEVICEGATE_MQTT_PROTOCOL_VERSION: '4' }).mqtt).toMatchObject({
      protocolVersion: 4,
    });
    expect(() => loadConfig({ ...url, DEVICEGATE_MQTT_PROTOCOL_VERSION: '3' })).toThrow(
      /DEVICEGATE_MQTT_PROTOCOL_VERSION/,
    );
    expect(() => loadConfig({ DEVICEGATE_MQTT_PROTOCOL_VERSION: '5' })).toThrow(
      /DEVICEGATE_MQTT_PROTOCOL_VERSION: only used with DEVICEGATE_MQTT_URL/,
    );
  });

  it('subscribes plainly with DEVICEGATE_MQTT_SHARED_SUBSCRIPTION=false', () => {
    const c = loadConfig({
      DEVICEGATE_MQTT_URL: 'mqtt://broker:1883',
      DEVICEGATE_MQTT_SHARED_SUBSCRIPTION: 'false',
    });
    expect(c.mqtt).toMatchObject({ kind: 'external', sharedSubscription: false });
  });

  it('treats an explicit port as not default, and allows port 0', () => {
    const c = loadConfig({ DEVICEGATE_MQTT_PORT: '0' });
    expect(c.mqtt).toMatchObject({ port: 0, portIsDefault: false });
  });

  it('needs a public URL in bridge mode on HTTP port 0 (the redirect URI is fixed before the port is bound)', () => {
    expect(() => loadConfig({ DEVICEGATE_HTTP_PORT: '0' })).toThrow(
      /DEVICEGATE_PUBLIC_URL: required in bridge mode/,
    );
    expect(loadConfig({ DEVICEGATE_HTTP_PORT: '0', DEVICEGATE_PUBLIC_URL: 'http://gw.test' }).http.port).toBe(
      0,
    );
    const relay = {
      DEVICEGATE_HTTP_PORT: '0',
      DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.test',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    };
    expect(loadConfig(relay).mode).toBe('device');
  });

  it('adds the default scope to the allowed scopes', () => {
    const c = loadConfig({
      DEVICEGATE_DEFAULT_SCOPE: 'openid tv:watch',
      DEVICEGATE_ALLOWED_SCOPES: 'openid',
    });
    expect([...c.allowedScopes].sort()).toEqual(['openid', 'tv:watch']);
  });

  it('documents every variable with a sentence', () => {
    expect(configDocs.length).toBeGreaterThan(20);
    for (const d of configDocs) {
      expect(d.name).toMatch(/^(DEVICEGATE_[A-Z_]+|NODE_ENV)$/);
      expect(d.doc.length).toBeGreaterThan(10);
    }
  });

  it('reads configured endpoints, the auth method and a client key (PEM or JWK)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dg-config-'));
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = join(dir, 'key.pem');
    writeFileSync(pem, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const jwk = join(dir, 'key.jwk');
    writeFileSync(
      jwk,
      JSON.stringify({ ...privateKey.export({ format: 'jwk' }), kid: 'k1', 'x5t#S256': 'thumb' }),
    );
    const base = {
      DEVICEGATE_UPSTREAM_ISSUER: 'https://github.com',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'Iv1.x',
      DEVICEGATE_UPSTREAM_DEVICE_AUTHORIZATION_ENDPOINT: 'https://github.com/login/device/code',
      DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT: 'https://github.com/login/oauth/access_token',
    };
    expect(loadConfig(base).upstream).toEqual({
      issuer: 'https://github.com',
      clientId: 'Iv1.x',
      endpoints: {
        deviceAuthorization: 'https://github.com/login/device/code',
        token: 'https://github.com/login/oauth/access_token',
      },
    });
    const withKey = (path: string) =>
      loadConfig({
        ...base,
        DEVICEGATE_UPSTREAM_AUTH_METHOD: 'private_key_jwt',
        DEVICEGATE_UPSTREAM_CLIENT_KEY: path,
      }).upstream;
    expect(withKey(pem)).toMatchObject({ authMethod: 'private_key_jwt', clientKey: { alg: 'ES256' } });
    expect(withKey(jwk)).toMatchObject({ clientKey: { alg: 'ES256', kid: 'k1', x5tS256: 'thumb' } });
  });

  it('reports every endpoint and client authentication problem in one pass', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dg-config-'));
    const notAKey = join(dir, 'not-a-key.pem');
    writeFileSync(notAKey, 'hello');
    const problems = (env: Record<string, string>): readonly string[] => {
      try {
        loadConfig({
          DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
          DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
          ...env,
        });
      } catch (err) {
        if (err instanceof ConfigError) return err.problems;
        throw err;
      }
      return [];
    };
    expect(
      problems({
        DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT: 'http://idp.example/token',
        DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT: 'https://idp.example/authorize',
        DEVICEGATE_UPSTREAM_CLIENT_SECRET: 's',
        DEVICEGATE_UPSTREAM_AUTH_METHOD: 'none',
      }),
    ).toEqual([
      'DEVICEGATE_UPSTREAM_DEVICE_AUTHORIZATION_ENDPOINT: required with DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT, DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT (configured endpoints replace discovery as a whole)',
      'DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT: not used in device mode',
      'DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT: plain http is refused (set DEVICEGATE_ALLOW_INSECURE_UPSTREAM=true to allow it)',
      'DEVICEGATE_UPSTREAM_CLIENT_SECRET: not sent with DEVICEGATE_UPSTREAM_AUTH_METHOD=none',
    ]);
    expect(problems({ DEVICEGATE_UPSTREAM_AUTH_METHOD: 'private_key_jwt' })).toEqual([
      'DEVICEGATE_UPSTREAM_CLIENT_KEY: required with DEVICEGATE_UPSTREAM_AUTH_METHOD=private_key_jwt',
    ]);
    expect(
      problems({
        DEVICEGATE_UPSTREAM_AUTH_METHOD: 'private_key_jwt',
        DEVICEGATE_UPSTREAM_CLIENT_KEY: notAKey,
      }),
    ).toEqual([
      `DEVICEGATE_UPSTREAM_CLIENT_KEY: ${notAKey} holds no private key (a PEM or a JWK with its private members)`,
    ]);
    expect(
      problems({
        DEVICEGATE_UPSTREAM_AUTH_METHOD: 'private_key_jwt',
        DEVICEGATE_UPSTREAM_CLIENT_KEY: join(dir, 'missing'),
      }),
    ).toEqual([expect.stringMatching(/^DEVICEGATE_UPSTREAM_CLIENT_KEY: cannot read .*missing/)]);
    expect(problems({ DEVICEGATE_UPSTREAM_AUTH_METHOD: 'client_secret_post' })).toEqual([
      'DEVICEGATE_UPSTREAM_CLIENT_SECRET: required with DEVICEGATE_UPSTREAM_AUTH_METHOD=client_secret_post',
    ]);
    expect(problems({ DEVICEGATE_UPSTREAM_CLIENT_KEY: notAKey })).toEqual([
      'DEVICEGATE_UPSTREAM_CLIENT_KEY: only used with DEVICEGATE_UPSTREAM_AUTH_METHOD=private_key_jwt',
    ]);
    expect(() => loadConfig({ DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT: 'https://idp.example/token' })).toThrow(
      /DEVICEGATE_UPSTREAM_ISSUER: required with the upstream endpoint variables/,
    );
  });
});

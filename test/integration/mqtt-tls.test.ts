/**
 * The embedded broker's device edge over TLS and WebSocket (issue 10, finding 3), through the production path:
 * `loadConfig` → `buildGateway` → `start()`, certificates made by deploy/gen-certs.sh. Devices are mqtt.js clients
 * (mqtts, ws, wss through a TLS-terminating proxy) and the Mosquitto command-line clients with `--cafile/--cert/--key`.
 * The gateway runs in bridge mode with configured endpoints, so `authorize` is answered `pending` by the real flow
 * service without any upstream call.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { type AddressInfo, type Socket, connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Server as TlsServer, connect as connectTls, createServer as createTlsServer } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/observability/log.ts';
import { type DeviceOptions, closeAllDevices, connectDevice, connectRefused } from '../helpers/device.ts';
import { type GatewayProcess, startGatewayProcess, stopAllGateways } from '../helpers/gateway-process.ts';
import { waitFor } from '../helpers/procs.ts';
import { type StartedGateway, startGateway } from '../helpers/gateway.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const KEY = 'tls-test-fleet-key-0123456789';
const SECRET = 'tls-test-secret-0123456789abcdef0123456789';

let dir: string;
let otherDir: string;

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 15_000, env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      err === null
        ? resolve(stdout)
        : reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`)),
    );
  });
}

/** Makes a CA, a server certificate and device certificates with the shipped script. */
export async function genCerts(out: string, devices: string[]): Promise<void> {
  await run('bash', [path.join(REPO, 'deploy', 'gen-certs.sh'), out, ...devices]);
}

const pem = (d: string, name: string) => readFile(path.join(d, name));

/** A device's TLS material from `d`: the CA, and its own certificate when it has one there. */
async function tlsOf(id: string | undefined, d = dir): Promise<NonNullable<DeviceOptions['tls']>> {
  const ca = await pem(dir, 'ca.crt');
  if (id === undefined) return { ca };
  return { ca, cert: await pem(d, `devices/${id}.crt`), key: await pem(d, `devices/${id}.key`) };
}

function gatewayEnv(extra: Record<string, string>): Record<string, string> {
  return {
    DEVICEGATE_UPSTREAM_ISSUER: 'http://127.0.0.1:9',
    DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    DEVICEGATE_UPSTREAM_MODE: 'authorization_code',
    DEVICEGATE_UPSTREAM_AUTHORIZATION_ENDPOINT: 'http://127.0.0.1:9/authorize',
    DEVICEGATE_UPSTREAM_TOKEN_ENDPOINT: 'http://127.0.0.1:9/token',
    DEVICEGATE_PUBLIC_URL: 'http://gateway.test',
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_MQTT_TLS_PORT: '0',
    DEVICEGATE_MQTT_TLS_CERT: path.join(dir, 'server.crt'),
    DEVICEGATE_MQTT_TLS_KEY: path.join(dir, 'server.key'),
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: SECRET,
    DEVICEGATE_LOG_LEVEL: 'silent',
    ...extra,
  };
}

async function startTlsGateway(extra: Record<string, string>): Promise<StartedGateway> {
  return startGateway(loadConfig(gatewayEnv(extra)), { log: createLogger('silent') });
}

/** `authorize` from a connected device, answered by the gateway's flow service. */
async function authorizes(o: DeviceOptions): Promise<void> {
  const device = await connectDevice(o);
  const reply = await device.ask('authorize', { rid: `r-${o.deviceId}` });
  expect(reply.json).toMatchObject({ rid: `r-${o.deviceId}`, status: 'pending' });
}

/** The TLS handshakes the broker refused so far. */
async function refusedHandshakes(gw: StartedGateway): Promise<number> {
  const m = /devicegate_mqtt_refused_connects_total\{reason="tls_handshake"\} (\d+)/.exec(
    await gw.metrics.render(),
  );
  return Number(m?.[1] ?? 0);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'dg-tls-'));
  otherDir = await mkdtemp(path.join(tmpdir(), 'dg-tls-other-'));
  await Promise.all([
    genCerts(dir, ['tv-cert', 'tv-mosq', 'tv-cn', 'tv-hmac']),
    genCerts(otherDir, ['tv-cert']),
  ]);
});

afterEach(closeAllDevices);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(otherDir, { recursive: true, force: true });
});

describe('DEVICEGATE_DEVICE_AUTH=cert: the certificate CN is the device id', () => {
  let gw: StartedGateway;
  let tlsPort: number;
  beforeAll(async () => {
    gw = await startTlsGateway({
      DEVICEGATE_DEVICE_AUTH: 'cert',
      DEVICEGATE_MQTT_TLS_CA: path.join(dir, 'ca.crt'),
    });
    tlsPort = Number(new URL(gw.mqttTlsUrl!).port);
  });
  afterAll(() => gw?.close());

  /** Device `id` on the TLS listener with the certificate issued to `certOf` (default: its own), no password. */
  const byCertificate = async (id: string, certOf = id): Promise<DeviceOptions> => ({
    url: `mqtts://localhost:${tlsPort}`,
    deviceId: id,
    username: null,
    password: null,
    tls: await tlsOf(certOf),
  });

  it('reports the bound TLS port (0 = a free one) in the addresses', () => {
    expect(gw.mqttTlsUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    expect(tlsPort).toBeGreaterThan(0);
  });

  it('answers an mqtt.js device that presents its certificate, with no username or password', async () => {
    await authorizes(await byCertificate('tv-cert'));
  });

  it('answers mosquitto_rr as a device with --cafile/--cert/--key', async () => {
    const args = ['-h', 'localhost', '-p', String(tlsPort), '-V', 'mqttv311', '-i', 'tv-mosq', '-q', '1'];
    const tls = ['--cafile', path.join(dir, 'ca.crt')];
    tls.push('--cert', path.join(dir, 'devices/tv-mosq.crt'), '--key', path.join(dir, 'devices/tv-mosq.key'));
    const topics = ['-t', 'devicegate/v1/tv-mosq/req/authorize', '-e', 'devicegate/v1/tv-mosq/res'];
    const out = await run('mosquitto_rr', [...args, ...tls, ...topics, '-m', '{"rid":"r-mosq"}', '-W', '10']);
    expect(JSON.parse(out)).toMatchObject({ rid: 'r-mosq', status: 'pending' });
  });

  it('refuses a certificate of another CA and a device without a certificate in the TLS handshake', async () => {
    const url = `mqtts://localhost:${tlsPort}`;
    const ca = await pem(dir, 'ca.crt');
    const before = await refusedHandshakes(gw);
    // the same device id, its certificate issued by another CA (deploy/gen-certs.sh run elsewhere)
    const foreign = { ...(await tlsOf('tv-cert', otherDir)), ca };
    const wrongCa = await connectRefused({
      url,
      deviceId: 'tv-cert',
      username: null,
      password: null,
      tls: foreign,
    });
    // and a device with the right fleet-key password but no certificate at all
    const noCert = await connectRefused({ url, deviceId: 'tv-hmac', key: KEY, tls: { ca } });
    // no CONNACK return code: TLS alerts (ERR_SSL_…) or a reset, before any MQTT byte
    for (const err of [wrongCa, noCert]) expect(typeof err.code).not.toBe('number');
    await waitFor(async () => (await refusedHandshakes(gw)) === before + 2, 5000, 'two refused handshakes');
  });

  it("refuses a client id other than the certificate's CN (CONNACK 5), so one certificate opens one session", async () => {
    // tv-cn's valid certificate, used to open tv-cert's session
    const err = await connectRefused(await byCertificate('tv-cert', 'tv-cn'));
    expect(err.code).toBe(5);
    expect(await gw.metrics.render()).toMatch(
      /devicegate_mqtt_refused_connects_total\{reason="client_id_mismatch"\} 1/,
    );
  });

  it('refuses the fleet-key password on the plain and WebSocket listeners: no certificate, no device', async () => {
    const plain = await connectRefused({ url: gw.mqttUrl, deviceId: 'tv-hmac', key: KEY });
    expect(plain.code).toBe(5);
    const ws = await connectRefused({ url: gw.mqttWsUrl!, deviceId: 'tv-hmac', key: KEY });
    expect(ws.code).toBe(5);
    expect(await gw.metrics.render()).toMatch(
      /devicegate_mqtt_refused_connects_total\{reason="no_certificate"\} 2/,
    );
  });

  it('keeps the same ACL for a certificate device: another device\u2019s request topic disconnects it', async () => {
    const device = await connectDevice(await byCertificate('tv-cert'));
    device.client.publish('devicegate/v1/tv-mosq/req/authorize', '{"rid":"stolen"}', { qos: 0 });
    await device.waitForClose();
  });
});

describe('DEVICEGATE_DEVICE_AUTH=hmac over TLS and WebSocket', () => {
  let gw: StartedGateway;
  let proxy: TlsServer;
  const proxied = new Set<Socket>();
  beforeAll(async () => {
    gw = await startTlsGateway({});
    // a TLS-terminating reverse proxy in front of the HTTP port, as in production (wss://…/mqtt)
    const httpPort = Number(new URL(gw.httpUrl).port);
    proxy = createTlsServer(
      { cert: await pem(dir, 'server.crt'), key: await pem(dir, 'server.key') },
      (tls) => {
        const upstream = connectTcp(httpPort, '127.0.0.1');
        proxied.add(upstream);
        tls.pipe(upstream).pipe(tls);
        upstream.on('error', () => tls.destroy());
        tls.on('error', () => upstream.destroy());
      },
    );
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    proxy?.close();
    for (const s of proxied) s.destroy();
    await gw?.close();
  });

  it('answers a device with its fleet-key password over mqtts (no client certificate asked for)', async () => {
    await authorizes({
      url: gw.mqttTlsUrl!.replace('127.0.0.1', 'localhost'),
      deviceId: 'tv-hmac',
      key: KEY,
      tls: await tlsOf(undefined),
    });
  });

  it('refuses TLS 1.1', async () => {
    const port = Number(new URL(gw.mqttTlsUrl!).port);
    const ca = await pem(dir, 'ca.crt');
    const outcome = (maxVersion: 'TLSv1.1' | 'TLSv1.2') =>
      new Promise<string>((resolve) => {
        const s = connectTls({
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          ca,
          maxVersion,
          minVersion: 'TLSv1',
        });
        s.once('secureConnect', () => {
          s.destroy();
          resolve('connected');
        });
        s.once('error', () => resolve('refused'));
      });
    expect(await outcome('TLSv1.2')).toBe('connected');
    expect(await outcome('TLSv1.1')).toBe('refused');
  });

  it('answers a device over ws://…/mqtt and over wss:// through a TLS proxy, with the same credentials', async () => {
    expect(gw.mqttWsUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/mqtt$/);
    await authorizes({ url: gw.mqttWsUrl!, deviceId: 'tv-ws', key: KEY });
    const port = (proxy.address() as AddressInfo).port;
    await authorizes({
      url: `wss://localhost:${port}/mqtt`,
      deviceId: 'tv-wss',
      key: KEY,
      tls: await tlsOf(undefined),
    });
    const wrong = await connectRefused({ url: gw.mqttWsUrl!, deviceId: 'tv-ws', password: 'wrong' });
    expect(wrong.code).toBe(4);
  });

  it('leaves the pages alone: their headers stay, and no other path upgrades', async () => {
    const page = await gw.app.inject({ method: 'GET', url: '/device' });
    expect(page.headers['content-security-policy']).toBeDefined();
    const mqtt = await gw.app.inject({ method: 'GET', url: '/mqtt' });
    expect(mqtt.headers['content-security-policy']).toBeUndefined();
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = request(`${gw.httpUrl}/device`, {
        headers: {
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-version': '13',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
      });
      req.on('upgrade', (_res, socket) => {
        socket.destroy();
        resolve(101);
      });
      req.on('response', (res) => {
        resolve(res.statusCode);
        req.destroy();
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).not.toBe(101);
  });
});

describe('SIGHUP', () => {
  let live: string;
  let gw: GatewayProcess;
  let tlsPort: number;
  beforeAll(async () => {
    live = await mkdtemp(path.join(tmpdir(), 'dg-tls-live-'));
    await genCerts(live, []);
    const env = gatewayEnv({
      DEVICEGATE_MQTT_TLS_CERT: path.join(live, 'server.crt'),
      DEVICEGATE_MQTT_TLS_KEY: path.join(live, 'server.key'),
      DEVICEGATE_LOG_LEVEL: 'info',
    });
    delete env.DEVICEGATE_HTTP_PORT;
    gw = await startGatewayProcess({ env, waitReady: false, timeoutMs: 50_000 });
    const running = await gw.waitForLog((l) => l.msg === 'devicegate is running');
    tlsPort = Number(new URL(String(running['mqttTlsUrl'])).port);
  }, 60_000);
  afterAll(async () => {
    await stopAllGateways();
    await rm(live, { recursive: true, force: true });
  });

  /** The SHA-256 fingerprint of the certificate a new TLS connection is served. */
  async function served(): Promise<string> {
    const ca = await pem(live, 'ca.crt');
    return new Promise((resolve, reject) => {
      const s = connectTls({ host: '127.0.0.1', port: tlsPort, servername: 'localhost', ca }, () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.destroy();
      });
      s.once('error', reject);
    });
  }

  it('serves a renewed certificate to new connections while an open connection stays up', async () => {
    const before = await served();
    const tls = { ca: await pem(live, 'ca.crt') };
    const open = await connectDevice({
      url: `mqtts://localhost:${tlsPort}`,
      deviceId: 'tv-open',
      key: KEY,
      tls,
    });
    await genCerts(live, []); // the same CA, a new server certificate and key in the same files
    const from = gw.logs().length;
    gw.kill('SIGHUP');
    await gw.waitForLog((l) => l.msg === 'TLS certificate reloaded', { from });
    expect(await served()).not.toBe(before);
    const reply = await open.ask('authorize', { rid: 'r-open' });
    expect(reply.json).toMatchObject({ rid: 'r-open', status: 'pending' });
    expect(open.closed).toBe(false);
    expect(gw.exited).toBe(false);
  });
});

/**
 * Composition root: builds every part from the config, starts them in order, and closes what it started in reverse.
 * Nothing else in the gateway listens on a port or opens a connection of its own.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config/index.ts';
import { type Clock, systemClock } from './core/clock.ts';
import { DEMO_DEVICE_KEY, deriveKeys, randomSecret } from './core/crypto.ts';
import { startDemoIdp, type DemoIdp } from './demo/idp.ts';
import { createLogger } from './observability/log.ts';
import { BridgeFlows } from './service/bridge.ts';
import { createFlowService, type FlowService } from './service/flows.ts';
import { Metrics } from './observability/metrics.ts';
import { Scheduler } from './service/scheduler.ts';
import { flowCodec } from './store/codec.ts';
import { MemoryStore } from './store/memory.ts';
import { RedisStore } from './store/redis/index.ts';
import type { FlowStore } from './store/types.ts';
import { EmbeddedBroker } from './transport/embedded.ts';
import { topics } from './transport/topics.ts';
import type { DeviceTransport } from './transport/types.ts';
import { createUpstream, type UpstreamClient } from './upstream/oauth.ts';
import { buildApp, type Readiness } from './web/app.ts';
import { registerDevicePages } from './web/routes/device.ts';

export interface GatewayOptions {
  config: Config;
  clock?: Clock;
  log?: Logger;
  /** A Redis client to borrow instead of opening one from the config (not closed by the gateway). */
  redis?: Redis;
  /** Write `.devicegate/demo.json` (where the demo listens) for `npm run sim`. Default: only in demo mode. */
  writeDemoFile?: boolean;
}

export interface Gateway {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly store: FlowStore;
  readonly service: FlowService;
  readonly publicUrl: string;
  readonly httpUrl: string;
  /** what devices connect to: `mqtt://host:port` (embedded) or the external broker's URL */
  readonly mqttUrl: string;
  readonly upstreamIssuer: string;
  /** set when the built-in demo identity provider runs */
  readonly demo: DemoIdp | undefined;
  /** the fleet key devices derive their passwords from */
  readonly deviceKey: string;
  close(): Promise<void>;
}

const DISCOVERY_RETRY_MS = [500, 1000, 2000, 5000, 10_000];

/** Starts a gateway. On failure everything started so far is closed again before the error is thrown. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { config } = options;
  const log = options.log ?? createLogger(config.logLevel);
  const clock = options.clock ?? systemClock;
  const metrics = new Metrics();
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const close of closers.reverse())
      await close().catch((err: unknown) => log.warn({ err }, 'close failed'));
    closers.length = 0;
  };

  try {
    warnAboutDemoKnobs(config, log);
    const keys = deriveKeys(config.secret ?? randomSecret());
    const deviceKey = config.deviceKey ?? DEMO_DEVICE_KEY;
    const httpPort = config.http.port === 0 ? await freePort(config.http.host) : config.http.port;
    const publicUrl = config.publicUrl ?? `http://localhost:${httpPort}`;

    // Store
    let store: FlowStore;
    const codec = flowCodec(keys);
    let redis: Redis | undefined;
    if (config.redis !== undefined) {
      const client = options.redis ?? new Redis(config.redis.url, RedisStore.clientOptions());
      if (options.redis === undefined) {
        closers.push(async () => void client.disconnect());
        // Without a listener ioredis prints every failed reconnect to stderr, outside the JSON log. Log the first
        // failure of an outage and the recovery; calls in between fail with UnavailableError and are logged there.
        let down = false;
        client.on('error', (err: Error) => {
          if (down) return;
          down = true;
          log.warn({ err: err.message }, 'redis connection failed; reconnecting');
        });
        client.on('ready', () => {
          if (!down) return;
          down = false;
          log.info('redis connection restored');
        });
      }
      redis = client;
      store = new RedisStore({ redis: client, keyPrefix: config.redis.keyPrefix, codec });
    } else {
      store = new MemoryStore({ codec, clock });
    }
    closers.push(() => store.close());

    // Upstream (the demo identity provider when none is configured)
    let demo: DemoIdp | undefined;
    let upstreamConfig = config.upstream;
    if (upstreamConfig === undefined) {
      const demoPort =
        config.demoPort === 0 ? 0 : await portOrFallback(config.http.host, config.demoPort, log, 'demo IdP');
      demo = await startDemoIdp({
        host: config.http.host,
        port: demoPort,
        redirectUris: [`${publicUrl}/oauth/callback`],
        deviceFlow: true,
        log: log.child({ component: 'demo-idp' }),
      });
      closers.push(() => demo!.close());
      upstreamConfig = { issuer: demo.issuer, clientId: demo.clientId, clientSecret: demo.clientSecret };
    }
    const upstreamClient: UpstreamClient = createUpstream({
      issuer: upstreamConfig.issuer,
      clientId: upstreamConfig.clientId,
      ...(upstreamConfig.clientSecret !== undefined && { clientSecret: upstreamConfig.clientSecret }),
      mode: config.mode,
      redirectUri: `${publicUrl}/oauth/callback`,
      timeoutMs: config.upstreamTimeoutMs,
      defaultIntervalSeconds: config.pollIntervalSeconds,
      allowInsecure:
        config.allowInsecureUpstream ?? (!config.production && isLoopback(upstreamConfig.issuer)),
      log: log.child({ component: 'upstream' }),
    });
    if (new URL(upstreamConfig.issuer).protocol === 'http:') {
      log.warn(
        { issuer: upstreamConfig.issuer },
        'the upstream is plain http: tokens cross the network unencrypted',
      );
    }
    const discovery = discoverWithRetry(upstreamClient, log);
    closers.push(async () => discovery.cancel());
    if (demo !== undefined) await discovery.done;

    // Transport, flow service, scheduler
    const t = topics(config.topicPrefix);
    let transport: DeviceTransport;
    /** where devices connect; the embedded broker knows its port once it listens */
    let mqttUrlOf: () => string;
    if (config.mqtt.kind === 'embedded') {
      const mqttPort = config.mqtt.portIsDefault
        ? await portOrFallback(config.mqtt.host, config.mqtt.port, log, 'embedded MQTT broker')
        : config.mqtt.port;
      const broker = new EmbeddedBroker({
        host: config.mqtt.host,
        port: mqttPort,
        topics: t,
        deviceAuth: config.deviceAuth,
        deviceKey,
        log: log.child({ component: 'mqtt' }),
        metrics,
      });
      transport = broker;
      const host = config.mqtt.host;
      mqttUrlOf = () => `mqtt://${displayHost(host)}:${broker.port}`;
    } else {
      const { ExternalBroker } = await import('./transport/external.ts');
      transport = new ExternalBroker({
        url: config.mqtt.url,
        ...(config.mqtt.username !== undefined && { username: config.mqtt.username }),
        ...(config.mqtt.password !== undefined && { password: config.mqtt.password }),
        ...(config.mqtt.clientId !== undefined && { clientId: config.mqtt.clientId }),
        // The same on every instance (they share the secret) and unknown to devices: see transport/external.ts.
        shareGroup: `devicegate-${keys.lookupHash('mqtt-share-group', config.topicPrefix).slice(0, 24)}`,
        topics: t,
        log: log.child({ component: 'mqtt' }),
        metrics,
      });
      const url = config.mqtt.url;
      mqttUrlOf = () => url;
    }
    const service = createFlowService({
      config,
      publicUrl,
      clock,
      store,
      upstream: upstreamClient.upstream,
      keys,
      log: log.child({ component: 'flows' }),
      metrics,
      channel: transport,
    });
    await transport.start(service.handleRequest);
    const mqttUrl = mqttUrlOf();
    closers.push(() => transport.close());

    const scheduler = new Scheduler({
      store,
      service: service.updater,
      upstream: upstreamClient.upstream,
      clock,
      log: log.child({ component: 'scheduler' }),
      metrics,
      leaseMs: config.leaseMs,
    });
    scheduler.start();
    closers.push(() => scheduler.close());

    // HTTP
    const readiness: Readiness = {
      store: async () => {
        await store.ping();
        return { ok: true, detail: config.redis === undefined ? 'memory' : 'redis' };
      },
      broker: async () => {
        const s = transport.status();
        return { ok: s.connected, detail: s.detail };
      },
      upstream: async () => {
        const s = upstreamClient.status();
        return { ok: s.ready, detail: s.detail };
      },
    };
    const app: FastifyInstance = await buildApp({
      log,
      metrics,
      readiness,
      ...(config.trustProxy !== undefined && { trustProxy: config.trustProxy }),
      register: async (a) => {
        if (upstreamClient.upstream.kind === 'authorization_code') {
          const bridge = new BridgeFlows({
            updater: service.updater,
            store,
            upstream: upstreamClient.upstream,
            keys,
            clock,
            metrics,
            log: log.child({ component: 'bridge' }),
          });
          await registerDevicePages(a, {
            bridge,
            keys,
            config,
            publicUrl,
            metrics,
            log,
            clock,
            upstreamIssuer: upstreamConfig.issuer,
            limits: {
              perIp: { max: config.codeEntryLimits.perIpPerMinute, windowMs: 60_000 },
              global: { max: config.codeEntryLimits.globalPerMinute, windowMs: 60_000 },
            },
            ...(redis !== undefined && { redis }),
          });
        }
      },
    });
    closers.push(() => app.close());
    await app.listen({ host: config.http.host, port: httpPort });
    const httpUrl = `http://${displayHost(config.http.host)}:${httpPort}`;

    if (options.writeDemoFile ?? demo !== undefined) {
      await writeDemoFile({
        mqttUrl,
        publicUrl,
        topicPrefix: config.topicPrefix,
        deviceAuth: config.deviceAuth,
        // only the published demo key is ever written down
        ...(config.deviceKey === undefined && { deviceKey: DEMO_DEVICE_KEY }),
      });
    }
    log.info(
      { http: httpUrl, publicUrl, mqtt: mqttUrl, upstream: upstreamConfig.issuer, mode: config.mode },
      'devicegate is running',
    );

    return {
      config,
      log,
      metrics,
      store,
      service,
      publicUrl,
      httpUrl,
      mqttUrl,
      upstreamIssuer: upstreamConfig.issuer,
      demo,
      deviceKey,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function warnAboutDemoKnobs(config: Config, log: Logger): void {
  if (config.upstream === undefined) {
    log.warn(
      'DEMO MODE: no DEVICEGATE_UPSTREAM_ISSUER; starting the built-in demo identity provider. Not for production.',
    );
  }
  if (config.deviceAuth === 'none') {
    log.warn('DEVICEGATE_DEVICE_AUTH=none: any MQTT client can act as any device. Demos only.');
  } else if (config.deviceKey === undefined) {
    log.warn(
      'DEVICEGATE_DEVICE_KEY is unset: using the published demo fleet key. Anyone can derive device passwords.',
    );
  }
  if (config.secret === undefined) {
    log.warn('DEVICEGATE_SECRET is unset: a random secret is used; pending flows do not survive a restart.');
  }
}

function discoverWithRetry(client: UpstreamClient, log: Logger): { done: Promise<void>; cancel(): void } {
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  const done = (async () => {
    for (let attempt = 0; !cancelled; attempt++) {
      try {
        await client.discover();
        return;
      } catch (err) {
        const wait = DISCOVERY_RETRY_MS[Math.min(attempt, DISCOVERY_RETRY_MS.length - 1)]!;
        log.warn(
          { err: err instanceof Error ? err.message : String(err), retryInMs: wait },
          'upstream discovery failed',
        );
        await new Promise<void>((resolve) => {
          timer = setTimeout(resolve, wait);
        });
      }
    }
  })();
  return {
    done,
    cancel() {
      cancelled = true;
      clearTimeout(timer);
    },
  };
}

function isLoopback(url: string): boolean {
  const host = new URL(url).hostname;
  return host === 'localhost' || host === '[::1]' || host.startsWith('127.');
}

function displayHost(host: string): string {
  return host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
}

/** A port the OS says is free right now. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port')),
      );
    });
  });
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** The default port if free; otherwise the next free one of the ten after it, with a warning. */
async function portOrFallback(host: string, port: number, log: Logger, what: string): Promise<number> {
  for (let p = port; p < port + 10; p++) {
    if (await portFree(host, p)) {
      if (p !== port) log.warn({ wanted: port, using: p }, `${what}: port ${port} is in use, using ${p}`);
      return p;
    }
  }
  return freePort(host);
}

/** Where the demo listens, for `npm run sim` on the same machine. Holds only demo (public) values. */
export const DEMO_FILE = path.join('.devicegate', 'demo.json');

async function writeDemoFile(info: Record<string, string>): Promise<void> {
  await mkdir(path.dirname(DEMO_FILE), { recursive: true });
  await writeFile(DEMO_FILE, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
}

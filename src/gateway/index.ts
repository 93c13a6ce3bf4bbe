/**
 * Composition root. `buildGateway` builds every part from the config and returns the graph unstarted: nothing
 * listens, connects or runs a timer until `start()`, which starts the parts in order (transport → scheduler → HTTP)
 * and `close()` closes what was started, newest first. Nothing else in the gateway opens a port or a connection of
 * its own. The layers and the data flow are described in docs/architecture.md.
 */
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import { DEMO_DEVICE_KEY, deriveKeys, randomSecret } from '../core/crypto.ts';
import type { PortFallback } from '../net/listen.ts';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import type { BridgeFlows } from '../service/bridge.ts';
import { type FlowService, createFlowService } from '../service/flows.ts';
import { flowCodec } from '../store/codec.ts';
import { Scheduler } from '../service/scheduler.ts';
import type { FlowStore } from '../store/types.ts';
import type { DeviceTransport } from '../transport/types.ts';
import type { UpstreamClient } from '../upstream/oauth.ts';
import { buildApp } from '../web/app.ts';
import { bridgeWiring } from './bridge.ts';
import { Closers } from './closers.ts';
import { readiness } from './readiness.ts';
import { relayWiring } from './relay.ts';
import { openStore } from './store.ts';
import { buildTransport, displayHost } from './transport.ts';
import { warnAboutDemoKnobs } from './warnings.ts';

/** Parts a caller provides instead of the ones the config would build. */
export interface GatewayOverrides {
  clock?: Clock;
  log?: Logger;
  /** a Redis client to borrow instead of opening one from the config (not closed by the gateway) */
  redis?: Redis;
  /** the upstream to use when the config names none (the demo identity provider) */
  upstream?: NonNullable<Config['upstream']>;
  /** the transport devices talk through, instead of the broker the config names (embedding, tests) */
  transport?: DeviceTransport;
  /** the demo only: the embedded broker may move off a taken default port, and says so */
  mqttPortFallback?: PortFallback | undefined;
}

/** Where a started gateway can be reached. */
export interface Addresses {
  /** where the HTTP server listens (its bound port) */
  readonly httpUrl: string;
  /** the base URL people and the upstream use (`DEVICEGATE_PUBLIC_URL`, else `http://localhost:{port}`) */
  readonly publicUrl: string;
  /** what devices connect to: the embedded broker's `mqtt://host:port` or the external broker's URL */
  readonly mqttUrl: string;
}

export interface Gateway {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly store: FlowStore;
  readonly service: FlowService;
  readonly transport: DeviceTransport;
  readonly upstream: UpstreamClient;
  readonly upstreamIssuer: string;
  /** bridge mode: the flows behind the code-entry page */
  readonly bridge: BridgeFlows | undefined;
  /** the HTTP app with every route registered (ready after `start()`; `inject()` works without a listener) */
  readonly app: FastifyInstance;
  /** the fleet key devices derive their passwords from */
  readonly deviceKey: string;
  /** Starts the parts in order; on failure closes what it started and rethrows. Once only. */
  start(): Promise<Addresses>;
  /** The addresses of a started gateway. Throws before `start()` resolved. */
  readonly addresses: Addresses;
  /** Closes what was started, newest first. Idempotent. */
  close(): Promise<void>;
}

/** Builds the gateway's parts without starting any of them. Throws when the config names no upstream. */
export function buildGateway(config: Config, overrides: GatewayOverrides = {}): Gateway {
  const log = overrides.log ?? createLogger(config.logLevel);
  const clock = overrides.clock ?? systemClock;
  const upstreamConfig = config.upstream ?? overrides.upstream;
  if (upstreamConfig === undefined) throw new Error('no upstream: configure one or start the demo');
  warnAboutDemoKnobs(config, log, overrides.upstream !== undefined);
  const metrics = new Metrics();
  const keys = deriveKeys(config.secret ?? randomSecret());
  const deviceKey = config.deviceKey ?? DEMO_DEVICE_KEY;
  const publicUrl = config.publicUrl ?? `http://localhost:${config.http.port}`;

  const opened = openStore({ config, codec: flowCodec(keys), clock, log, redis: overrides.redis });
  const { store } = opened;
  const wiringDeps = { config, upstream: upstreamConfig, publicUrl, keys, clock, log, metrics };
  const wiring = config.mode === 'device' ? relayWiring(wiringDeps) : bridgeWiring(wiringDeps);
  const built =
    overrides.transport === undefined
      ? buildTransport({ config, keys, deviceKey, log, metrics, portFallback: overrides.mqttPortFallback })
      : { transport: overrides.transport, url: () => 'the caller’s transport' };
  const { transport } = built;
  const service = createFlowService({
    config,
    publicUrl,
    clock,
    store,
    upstream: wiring.upstream.upstream,
    starter: wiring.starter(store),
    keys,
    log: log.child({ component: 'flows' }),
    metrics,
    channel: transport,
  });
  const mode = wiring.withService({ service, store, attempts: opened.attempts });
  const scheduler = new Scheduler({
    store,
    service: service.updater,
    upstream: wiring.upstream.upstream,
    clock,
    log: log.child({ component: 'scheduler' }),
    metrics,
    leaseMs: config.leaseMs,
  });
  const app = buildApp({
    log,
    metrics,
    readiness: readiness({ config, store, transport, upstream: wiring.upstream }),
    ...(config.trustProxy !== undefined && { trustProxy: config.trustProxy }),
    register: mode.routes,
  });

  const closers = new Closers(log);
  closers.push('store', opened.close);
  let started: Promise<Addresses> | undefined;
  let addresses: Addresses | undefined;

  const start = async (): Promise<Addresses> => {
    try {
      closers.push('upstream', async () => wiring.upstream.close());
      wiring.upstream.start();
      if (overrides.upstream !== undefined) await wiring.upstream.ready();
      await transport.start(service.handleRequest);
      closers.push('transport', () => transport.close());
      scheduler.start();
      closers.push('scheduler', () => scheduler.close());
      closers.push('http', () => app.close());
      await app.listen({ host: config.http.host, port: config.http.port });
      const port = boundPort(app);
      addresses = {
        httpUrl: `http://${displayHost(config.http.host)}:${port}`,
        publicUrl: config.publicUrl ?? `http://localhost:${port}`,
        mqttUrl: built.url(),
      };
      log.info({ ...addresses, upstream: upstreamConfig.issuer, mode: config.mode }, 'devicegate is running');
      return addresses;
    } catch (err) {
      await closers.closeAll();
      throw err;
    }
  };

  return {
    config,
    log,
    metrics,
    store,
    service,
    transport,
    upstream: wiring.upstream,
    upstreamIssuer: upstreamConfig.issuer,
    bridge: mode.bridge,
    app,
    deviceKey,
    start: () => (started ??= start()),
    get addresses(): Addresses {
      if (addresses === undefined) throw new Error('the gateway has not started');
      return addresses;
    },
    close: () => closers.closeAll(),
  };
}

function boundPort(app: FastifyInstance): number {
  const address = app.server.address();
  if (typeof address === 'object' && address !== null) return address.port;
  throw new Error('the HTTP server has no TCP address');
}

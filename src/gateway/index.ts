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
import type { Clock } from '../core/clock.ts';
import type { PortFallback } from '../net/listen.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { BridgeFlows } from '../service/bridge.ts';
import type { FlowService } from '../service/flows.ts';
import type { RevokedDevices } from '../service/revocations.ts';
import type { FlowStore } from '../store/types.ts';
import type { DeviceTransport } from '../transport/types.ts';
import type { UpstreamClient } from '../upstream/oauth.ts';
import { Closers } from './closers.ts';
import { startParts } from './lifecycle.ts';
import { buildParts } from './parts.ts';
import type { BuiltTransport } from './transport.ts';

/** Parts a caller provides instead of the ones the config would build. */
export interface GatewayOverrides {
  /** the host's clock (the gateway runs on the Redis server's time when the store is Redis) */
  clock?: Clock;
  log?: Logger;
  /** a Redis client to borrow instead of opening one from the config (not closed by the gateway) */
  redis?: Redis;
  /** the upstream to use when the config names none (the demo identity provider) */
  upstream?: NonNullable<Config['upstream']>;
  /** the transport devices talk through, and where they reach it, instead of the broker the config names */
  transport?: BuiltTransport;
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
  /** the embedded broker's TLS listener, `mqtts://host:port` (its bound port), when TLS is configured */
  readonly mqttTlsUrl?: string;
  /** the embedded broker's MQTT over WebSocket, `ws://host:port/mqtt` on the HTTP server */
  readonly mqttWsUrl?: string;
  /** the operations port (`/metrics`, `/readyz`, the admin API), when `DEVICEGATE_ADMIN_PORT` is set */
  readonly adminUrl?: string;
}

export interface Gateway {
  readonly config: Config;
  readonly log: Logger;
  /** the gateway's time: the Redis server's clock on the Redis store (every instance shares it), else the local one */
  readonly clock: Clock;
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
  /** the operations port's app (`DEVICEGATE_ADMIN_PORT`); `inject()` works without a listener */
  readonly adminApp: FastifyInstance | undefined;
  /** device revocation (src/service/revocations.ts): what the admin API and the command line call */
  readonly revocations: RevokedDevices;
  /** the fleet key devices derive their passwords from */
  readonly deviceKey: string;
  /** Starts the parts in order; on failure closes what it started and rethrows. Once only. */
  start(): Promise<Addresses>;
  /** The addresses of a started gateway. Throws before `start()` resolved. */
  readonly addresses: Addresses;
  /** Closes what was started, newest first. Idempotent. */
  close(): Promise<void>;
  /**
   * Reads the embedded broker's TLS certificate and key again (SIGHUP): new connections get them, open ones stay.
   * False when there is no TLS listener or the files were unusable (then the old ones stay; the log says why).
   */
  reloadTls(): boolean;
}

/** Builds the gateway's parts without starting any of them. Throws when the config names no upstream. */
export function buildGateway(config: Config, overrides: GatewayOverrides = {}): Gateway {
  const p = buildParts(config, overrides);
  const closers = new Closers(p.log);
  closers.push('store', p.opened.close);
  let started: Promise<Addresses> | undefined;
  let addresses: Addresses | undefined;
  const start = async (): Promise<Addresses> => {
    const at = await startParts(p, closers, overrides.upstream !== undefined);
    addresses = at;
    return at;
  };
  return {
    config,
    log: p.log,
    clock: p.clock,
    metrics: p.metrics,
    store: p.opened.store,
    service: p.service,
    transport: p.built.transport,
    upstream: p.upstream,
    upstreamIssuer: p.upstreamIssuer,
    bridge: p.mode.bridge,
    app: p.app,
    adminApp: p.adminApp,
    revocations: p.revocations,
    deviceKey: p.deviceKey,
    start: () => (started ??= start()),
    get addresses(): Addresses {
      if (addresses === undefined) throw new Error('the gateway has not started');
      return addresses;
    },
    close: () => closers.closeAll(),
    reloadTls: () => p.built.reloadTls?.() ?? false,
  };
}

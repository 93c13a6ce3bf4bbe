/**
 * The gateway's parts, built from the config and wired to each other, none of them started: the store, the mode's
 * upstream and starter, the transport (before the flow service, which publishes through it), the flow service, the
 * mode's pages, the scheduler and the HTTP app. docs/architecture.md draws the graph.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import { DEMO_DEVICE_KEY, deriveKeys, randomSecret } from '../core/crypto.ts';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { type FlowService, createFlowService } from '../service/flows.ts';
import { ApprovalCap } from '../service/approval-cap.ts';
import { RevocationEnforcer, RevokedDevices } from '../service/revocations.ts';
import { Scheduler } from '../service/scheduler.ts';
import { flowCodec } from '../store/codec.ts';
import type { UpstreamClient } from '../upstream/oauth.ts';
import { MAX_PACKET_BYTES } from '../transport/embedded.ts';
import { buildAdminApp } from '../web/admin.ts';
import { buildApp } from '../web/app.ts';
import { bridgeWiring } from './bridge.ts';
import type { GatewayOverrides } from './index.ts';
import { readiness } from './readiness.ts';
import { relayWiring } from './relay.ts';
import { type OpenedStore, openStore } from './store.ts';
import { type BuiltTransport, buildTransport } from './transport.ts';
import { warnAboutDemoKnobs } from './warnings.ts';
import { type ModeParts, publicUrlOf } from './wiring.ts';

export interface Parts {
  readonly config: Config;
  readonly log: Logger;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly opened: OpenedStore;
  readonly upstream: UpstreamClient;
  readonly upstreamIssuer: string;
  readonly built: BuiltTransport;
  readonly service: FlowService;
  readonly mode: ModeParts;
  readonly scheduler: Scheduler;
  readonly app: FastifyInstance;
  /** the operations port's app (`DEVICEGATE_ADMIN_PORT`), or undefined when everything is on `app` */
  readonly adminApp: FastifyInstance | undefined;
  readonly revocations: RevokedDevices;
  readonly enforcer: RevocationEnforcer;
  readonly deviceKey: string;
}

/** Builds every part; opens, binds and connects nothing. Throws when neither the config nor `o` names an upstream. */
export function buildParts(config: Config, o: GatewayOverrides): Parts {
  const log = o.log ?? createLogger(config.logLevel);
  // the host's clock; the gateway's own time comes from the store (Redis server time on Redis: ./store.ts)
  const localClock: Clock = o.clock ?? systemClock;
  const upstreamConfig = config.upstream ?? o.upstream;
  if (upstreamConfig === undefined) throw new Error('no upstream: configure one or start the demo');
  warnAboutDemoKnobs(config, log, o.upstream !== undefined);

  const metrics = new Metrics();
  const keys = deriveKeys(config.secret ?? randomSecret());
  const deviceKey = config.deviceKey ?? DEMO_DEVICE_KEY;
  const publicUrl = publicUrlOf(config);

  const opened = openStore({ config, codec: flowCodec(keys), clock: localClock, log, redis: o.redis });
  const { store, clock } = opened;
  const demoIdp = o.upstream !== undefined;
  const wiringDeps = { config, upstream: upstreamConfig, demoIdp, publicUrl, keys, clock, log, metrics };
  const wiring = config.mode === 'device' ? relayWiring(wiringDeps) : bridgeWiring(wiringDeps);
  const built: BuiltTransport =
    o.transport ??
    buildTransport({
      config,
      keys,
      deviceKey,
      isRevoked: (deviceId) => store.isRevoked(deviceId),
      log,
      metrics,
      portFallback: o.mqttPortFallback,
    });
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
    channel: built.transport,
  });
  // one cap for both places a person's approval arrives: bridge callbacks and relay polls
  const cap = new ApprovalCap({
    counter: opened.attempts,
    keys,
    clock,
    perHour: config.approvalsPerPerson,
    metrics,
  });
  const mode = wiring.withService({ service, store, attempts: opened.attempts, cap });
  const scheduler = new Scheduler({
    store,
    service: service.updater,
    upstream: wiring.upstream.upstream,
    clock,
    log: log.child({ component: 'scheduler' }),
    metrics,
    leaseMs: config.leaseMs,
    cap,
  });
  const revocations = new RevokedDevices({ store, log });
  const enforcer = new RevocationEnforcer({
    store,
    grants: service.grants,
    updater: service.updater,
    clock,
    disconnect: (deviceId) => built.transport.disconnect?.(deviceId),
    log: log.child({ component: 'revocations' }),
  });
  const checks = readiness({ config, store, transport: built.transport, upstream: wiring.upstream });
  const app = buildApp({
    log,
    metrics,
    readiness: checks,
    operations: config.admin === undefined,
    ...(config.trustProxy !== undefined && { trustProxy: config.trustProxy }),
    ...(built.websocket !== undefined && {
      // one WebSocket message carries one MQTT packet: the largest packet plus its longest fixed header
      mqttWebSocket: { handler: built.websocket, maxPayload: MAX_PACKET_BYTES + 5 },
    }),
    register: mode.routes,
    shell: { secure: new URL(publicUrl).protocol === 'https:', codeEntry: config.mode !== 'device' },
  });
  const adminApp =
    config.admin === undefined
      ? undefined
      : buildAdminApp({ log, metrics, readiness: checks, token: config.admin.token, revocations });
  return {
    config,
    log,
    clock,
    metrics,
    opened,
    upstream: wiring.upstream,
    upstreamIssuer: upstreamConfig.issuer,
    built,
    service,
    mode,
    scheduler,
    app,
    adminApp,
    revocations,
    enforcer,
    deviceKey,
  };
}

/**
 * The flow service, assembled: where device requests, upstream answers and the person's decisions meet the engine
 * and the store. The parts (see docs/architecture.md):
 * - `dispatch.ts` takes device requests and answers them;
 * - `start-relay.ts` / `start-bridge.ts` start flows — the one for the upstream's mode, chosen once by the mode's
 *   wiring (src/gateway/relay.ts, src/gateway/bridge.ts) and passed in;
 * - `updater.ts` is every later state change (read → apply → compare-and-set, then the effects);
 * - `grants.ts` keeps refresh tokens; `replies.ts` renders and sends what devices are told.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { Clock } from '../core/clock.ts';
import type { Keys } from '../core/crypto.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { FlowStore } from '../store/types.ts';
import type { DeviceRequestHandler } from '../transport/types.ts';
import type { Upstream } from '../upstream/types.ts';
import { DeviceRequests } from './dispatch.ts';
import { GrantStore } from './grants.ts';
import { type ReplyChannel, Replies } from './replies.ts';
import type { FlowStarter } from './starter.ts';
import { storeCall } from './store-call.ts';
import { DeviceThrottle } from './throttle.ts';
import { FlowUpdater } from './updater.ts';

export interface FlowServiceDeps {
  config: Config;
  /** the effective public base URL (no trailing slash) */
  publicUrl: string;
  clock: Clock;
  store: FlowStore;
  upstream: Upstream;
  keys: Keys;
  log: Logger;
  metrics: Metrics;
  /** where replies to devices are published (the transport) */
  channel: ReplyChannel;
  /** starts flows for `req/authorize`: the starter of the upstream's mode */
  starter: FlowStarter;
}

export interface FlowService {
  /** Give this to the transport: it handles every device request and never throws. */
  readonly handleRequest: DeviceRequestHandler;
  /** State changes from outside a device request: the scheduler's visits and the bridge's pages. */
  readonly updater: FlowUpdater;
  /** the devices' kept refresh tokens */
  readonly grants: GrantStore;
}

export function createFlowService(deps: FlowServiceDeps): FlowService {
  const { config, clock, store, upstream, keys, log, metrics, starter } = deps;
  const replies = new Replies({ channel: deps.channel, publicUrl: deps.publicUrl, keys, metrics, log });
  const grants = new GrantStore({ store, keys, ttlSeconds: config.grantTtlSeconds, upstream, log });
  const updater = new FlowUpdater({ store, clock, leaseMs: config.leaseMs, grants, replies, metrics, log });
  const rate = config.deviceRate;
  const dispatcher = new DeviceRequests({
    clock,
    defaultScope: config.defaultScope,
    allowedScopes: config.allowedScopes,
    starter,
    updater,
    grants,
    upstream,
    replies,
    isRevoked: (deviceId) => storeCall(() => store.isRevoked(deviceId)),
    throttle:
      rate > 0 ? new DeviceThrottle({ burst: 10 * rate, perSecond: rate, maxDevices: 100_000 }) : undefined,
    metrics,
    log,
  });
  return { handleRequest: dispatcher.handle, updater, grants };
}

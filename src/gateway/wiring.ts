/**
 * What differs between the two upstream modes, as the composition root sees it. Each mode has a module of its own
 * (./relay.ts, ./bridge.ts); the root picks one once, from `config.mode`.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { plainHttpUpstreamAllowed } from '../config/checks.ts';
import type { Config } from '../config/index.ts';
import type { Clock } from '../core/clock.ts';
import type { Keys } from '../core/crypto.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ApprovalCap } from '../service/approval-cap.ts';
import type { BridgeFlows } from '../service/bridge.ts';
import type { FlowService } from '../service/flows.ts';
import type { FlowStarter } from '../service/starter.ts';
import type { AttemptCounter, FlowStore } from '../store/types.ts';
import type { UpstreamClient, UpstreamOptions } from '../upstream/oauth.ts';

/** What a mode's wiring is given. */
export interface WiringDeps {
  config: Config;
  /** the upstream's issuer, client id and secret (the config's, or the demo identity provider's) */
  upstream: NonNullable<Config['upstream']>;
  /** `upstream` is the demo's own identity provider, started in this process (src/demo/launch.ts) */
  demoIdp: boolean;
  /** the base URL people and the upstream reach the gateway at (no trailing slash) */
  publicUrl: string;
  keys: Keys;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

/** The parts a mode adds once the flow service exists. */
export interface ModeParts {
  /** bridge mode: the flows behind the code-entry page */
  bridge: BridgeFlows | undefined;
  /** the HTTP routes of the mode (bridge: the page and the OAuth callback; relay: none) */
  routes(app: FastifyInstance): Promise<void>;
}

export interface Wiring {
  readonly upstream: UpstreamClient;
  /** The mode's flow starter for `req/authorize`, over the store. */
  starter(store: FlowStore): FlowStarter;
  /** Builds the rest of the mode around the service and the store. */
  withService(parts: {
    service: FlowService;
    store: FlowStore;
    attempts: AttemptCounter;
    cap: ApprovalCap;
  }): ModeParts;
}

/**
 * The base URL people and the upstream reach the gateway at: `DEVICEGATE_PUBLIC_URL`, else `http://localhost:{port}`
 * — the configured HTTP port while building (bridge mode cannot run on port 0 without a public URL, see
 * src/config/checks.ts), the bound one once listening.
 */
export function publicUrlOf(config: Config, port: number = config.http.port): string {
  return config.publicUrl ?? `http://localhost:${port}`;
}

/** The upstream client's options both modes share. */
export function upstreamOptions(d: WiringDeps): Omit<UpstreamOptions, 'mode'> {
  const { config, upstream } = d;
  return {
    issuer: upstream.issuer,
    clientId: upstream.clientId,
    ...(upstream.clientSecret !== undefined && { clientSecret: upstream.clientSecret }),
    ...(upstream.authMethod !== undefined && { authMethod: upstream.authMethod }),
    ...(upstream.clientKey !== undefined && { clientKey: upstream.clientKey }),
    ...(upstream.endpoints !== undefined && { endpoints: upstream.endpoints }),
    redirectUri: `${d.publicUrl}/oauth/callback`,
    timeoutMs: config.upstreamTimeoutMs,
    defaultIntervalSeconds: config.pollIntervalSeconds,
    allowInsecure:
      demoIdpOverHttp(d) ||
      allowInsecureUpstream(config, [upstream.issuer, ...Object.values(upstream.endpoints ?? {})]),
    clock: d.clock,
    log: d.log.child({ component: 'upstream' }),
  };
}

/**
 * The demo's own identity provider runs in this process and is plain http; on a LAN address (src/demo/lan.ts) it is
 * not loopback, which the rule for configured upstreams refuses. Allowed here for the demo alone, never for an
 * upstream the environment names (and production refuses the demo at `loadConfig`).
 */
function demoIdpOverHttp(d: WiringDeps): boolean {
  return d.demoIdp && !d.config.production && d.config.upstream === undefined;
}

/**
 * Whether plain-http upstream endpoints may be used: the rule `loadConfig` already checked the issuer and each
 * configured endpoint by (`urls[0]` is the issuer, which decides when every URL is https).
 */
function allowInsecureUpstream(config: Config, urls: readonly [string, ...string[]]): boolean {
  const plain = urls.filter((url) => new URL(url).protocol === 'http:');
  return (plain.length > 0 ? plain : [urls[0]]).every((url) =>
    plainHttpUpstreamAllowed({
      explicit: config.allowInsecureUpstream,
      production: config.production,
      issuer: url,
    }),
  );
}

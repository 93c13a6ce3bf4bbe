/**
 * Bridge mode (`DEVICEGATE_UPSTREAM_MODE=authorization_code`): the gateway issues the codes, serves the code-entry
 * page, and signs the person in at the upstream with authorization code + PKCE.
 */
import { BridgeFlows } from '../service/bridge.ts';
import { createUpstream } from '../upstream/oauth.ts';
import { CodeEntryGuard } from '../service/code-entry-guard.ts';
import { BridgeStarter } from '../service/start-bridge.ts';
import { devicePages } from '../web/device-pages.ts';
import { type Wiring, type WiringDeps, upstreamOptions } from './wiring.ts';

export function bridgeWiring(d: WiringDeps): Wiring {
  const { config, log } = d;
  const client = createUpstream({ ...upstreamOptions(d), mode: 'authorization_code' });
  return {
    upstream: client,
    starter: (store) =>
      new BridgeStarter({
        store,
        keys: d.keys,
        clock: d.clock,
        metrics: d.metrics,
        codeTtlSeconds: config.codeTtlSeconds,
        userCodeLength: config.userCodeLength,
        pollIntervalSeconds: config.pollIntervalSeconds,
        maxFlowsPerDevice: config.maxFlowsPerDevice,
        leaseMs: config.leaseMs,
      }),
    withService({ service, store, attempts, cap }) {
      const bridge = new BridgeFlows({
        updater: service.updater,
        store,
        upstream: client.upstream,
        keys: d.keys,
        clock: d.clock,
        metrics: d.metrics,
        log: log.child({ component: 'bridge' }),
        cap,
      });
      const guard = new CodeEntryGuard({ counter: attempts, limits: config.codeEntryLimits, clock: d.clock });
      return {
        bridge,
        routes: (app) =>
          devicePages(app, {
            bridge,
            guard,
            publicUrl: d.publicUrl,
            issuer: d.upstream.issuer,
            authorizeEndpoint: () => client.authorizationEndpoint(),
            keys: d.keys,
            requestsPerMinute: config.codeEntryLimits.requestsPerMinute,
            userCodeLength: config.userCodeLength,
            metrics: d.metrics,
            log,
            clock: d.clock,
          }),
      };
    },
  };
}

/**
 * Bridge mode (`DEVICEGATE_UPSTREAM_MODE=authorization_code`): the gateway issues the codes, serves the code-entry
 * page, and signs the person in at the upstream with authorization code + PKCE.
 */
import { BridgeFlows } from '../service/bridge.ts';
import { createUpstream } from '../upstream/oauth.ts';
import { withLifecycle } from './upstream-shim.ts';
import { registerDevicePages } from '../web/routes/device.ts';
import { type Wiring, type WiringDeps, allowInsecureUpstream } from './wiring.ts';

export function bridgeWiring(d: WiringDeps): Wiring {
  const { config, log } = d;
  const client = withLifecycle(
    createUpstream({
      issuer: d.upstream.issuer,
      clientId: d.upstream.clientId,
      ...(d.upstream.clientSecret !== undefined && { clientSecret: d.upstream.clientSecret }),
      mode: 'authorization_code',
      redirectUri: `${d.publicUrl}/oauth/callback`,
      timeoutMs: config.upstreamTimeoutMs,
      defaultIntervalSeconds: config.pollIntervalSeconds,
      allowInsecure: allowInsecureUpstream(config, d.upstream.issuer),
      log: log.child({ component: 'upstream' }),
    }),
    log,
  );
  return {
    upstream: client,
    withService({ service, store, redis }) {
      const upstream = client.upstream;
      if (upstream.kind !== 'authorization_code') throw new Error('bridge wiring needs the bridge upstream');
      const bridge = new BridgeFlows({
        service,
        store,
        upstream,
        keys: d.keys,
        clock: d.clock,
        metrics: d.metrics,
        log: log.child({ component: 'bridge' }),
      });
      return {
        bridge,
        routes: (app) =>
          registerDevicePages(app, {
            bridge,
            keys: d.keys,
            config,
            publicUrl: d.publicUrl,
            metrics: d.metrics,
            log,
            clock: d.clock,
            upstreamIssuer: d.upstream.issuer,
            limits: {
              perIp: { max: config.codeEntryLimits.perIpPerMinute, windowMs: 60_000 },
              global: { max: config.codeEntryLimits.globalPerMinute, windowMs: 60_000 },
            },
            ...(redis !== undefined && { redis }),
          }),
      };
    },
  };
}

/** Relay mode (`DEVICEGATE_UPSTREAM_MODE=device`): the upstream's RFC 8628 endpoint issues the codes; no page. */
import { createUpstream } from '../upstream/oauth.ts';
import { withLifecycle } from './upstream-shim.ts';
import { type Wiring, type WiringDeps, allowInsecureUpstream } from './wiring.ts';

export function relayWiring(d: WiringDeps): Wiring {
  const upstream = withLifecycle(
    createUpstream({
      issuer: d.upstream.issuer,
      clientId: d.upstream.clientId,
      ...(d.upstream.clientSecret !== undefined && { clientSecret: d.upstream.clientSecret }),
      mode: 'device',
      redirectUri: `${d.publicUrl}/oauth/callback`,
      timeoutMs: d.config.upstreamTimeoutMs,
      defaultIntervalSeconds: d.config.pollIntervalSeconds,
      allowInsecure: allowInsecureUpstream(d.config, d.upstream.issuer),
      log: d.log.child({ component: 'upstream' }),
    }),
    d.log,
  );
  return {
    upstream,
    withService: () => ({ bridge: undefined, routes: async () => {} }),
  };
}

/** Relay mode (`DEVICEGATE_UPSTREAM_MODE=device`): the upstream's RFC 8628 endpoint issues the codes; no page. */
import { RelayStarter } from '../service/start-relay.ts';
import { createUpstream } from '../upstream/oauth.ts';
import { type Wiring, type WiringDeps, upstreamOptions } from './wiring.ts';

export function relayWiring(d: WiringDeps): Wiring {
  const upstream = createUpstream({ ...upstreamOptions(d), mode: 'device' });
  const { config } = d;
  return {
    upstream,
    starter: (store) =>
      new RelayStarter({
        store,
        upstream: upstream.upstream,
        clock: d.clock,
        codeTtlSeconds: config.codeTtlSeconds,
        maxFlowsPerDevice: config.maxFlowsPerDevice,
        leaseMs: config.leaseMs,
      }),
    withService: () => ({ bridge: undefined, routes: async () => {} }),
  };
}

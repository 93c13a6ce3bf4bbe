/** Relay mode (`DEVICEGATE_UPSTREAM_MODE=device`): the upstream's RFC 8628 endpoint issues the codes; no page. */
import { createUpstream } from '../upstream/oauth.ts';
import { type Wiring, type WiringDeps, upstreamOptions } from './wiring.ts';

export function relayWiring(d: WiringDeps): Wiring {
  const upstream = createUpstream({ ...upstreamOptions(d), mode: 'device' });
  return {
    upstream,
    withService: () => ({ bridge: undefined, routes: async () => {} }),
  };
}

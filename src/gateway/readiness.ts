/** `/readyz`: one check per dependency the gateway cannot serve devices without. */
import type { Config } from '../config/index.ts';
import type { FlowStore } from '../store/types.ts';
import type { DeviceTransport } from '../transport/types.ts';
import type { UpstreamClient } from '../upstream/oauth.ts';
import type { Readiness } from '../web/app.ts';

export function readiness(d: {
  config: Config;
  store: FlowStore;
  transport: DeviceTransport;
  upstream: UpstreamClient;
}): Readiness {
  return {
    store: async () => {
      await d.store.ping();
      return { ok: true, detail: d.config.redis === undefined ? 'memory' : 'redis' };
    },
    broker: async () => {
      const s = d.transport.status();
      return { ok: s.connected, detail: s.detail };
    },
    // a saturated request queue (src/transport/fair-queue.ts): send devices to another instance for a while
    requests: async () => {
      const l = d.transport.load();
      return { ok: !l.saturated, detail: l.detail };
    },
    upstream: async () => {
      const s = d.upstream.status();
      return { ok: s.ready, detail: s.detail };
    },
  };
}

/**
 * How a flow is written to a store: public fields as JSON (device id and rid live in the key), secrets sealed with
 * AES-256-GCM bound to the flow id. A Redis dump shows no token, device code, PKCE verifier or user code.
 */
import type { Flow, FlowSecrets } from '../core/flow.ts';
import { flowId } from '../core/flow.ts';
import type { Keys } from '../core/crypto.ts';
import type { FlowCodec } from '../store/types.ts';

type Stored = Omit<Flow, 'deviceId' | 'rid' | 'secrets'> & { s: string };

export function flowCodec(keys: Keys): FlowCodec {
  return {
    encode(flow) {
      const { deviceId, rid, secrets, ...rest } = flow;
      const stored: Stored = { ...rest, s: keys.seal(JSON.stringify(secrets), flowId(deviceId, rid)) };
      return JSON.stringify(stored);
    },
    decode(deviceId, rid, text) {
      const { s, ...rest } = JSON.parse(text) as Stored;
      const secrets = JSON.parse(keys.open(s, flowId(deviceId, rid))) as FlowSecrets;
      return { deviceId, rid, ...rest, secrets };
    },
  };
}

/** Starts an in-process gateway the way production does (`buildGateway` then `start()`), for integration tests. */
import type { Config } from '../../src/config/index.ts';
import {
  type Addresses,
  type Gateway,
  type GatewayOverrides,
  buildGateway,
} from '../../src/gateway/index.ts';

export type StartedGateway = Gateway & Addresses;

export async function startGateway(
  config: Config,
  overrides: GatewayOverrides = {},
): Promise<StartedGateway> {
  const gateway = buildGateway(config, overrides);
  const at = await gateway.start();
  return Object.assign(gateway, at);
}

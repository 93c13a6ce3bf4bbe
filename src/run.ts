/**
 * Runs the gateway the way `npm start` does: the demo identity provider first when no upstream is configured, then
 * the gateway built from the config and started, then (demo only) the state file `npm run sim` reads.
 */
import type { Logger } from 'pino';
import { banner } from './cli/banner.ts';
import type { Config } from './config/index.ts';
import { DEMO_DEVICE_KEY } from './core/crypto.ts';
import { type Demo, demoConfig, startDemo } from './demo/launch.ts';
import { removeDemoState, writeDemoState } from './demo/state.ts';
import { type Gateway, buildGateway } from './gateway/index.ts';
import { publicUrlOf } from './gateway/wiring.ts';

export interface Running {
  readonly gateway: Gateway;
  /** the demo's "how to try it" text (outside the demo the `devicegate is running` log line says where it listens) */
  readonly banner: string | undefined;
  close(): Promise<void>;
}

export async function run(configured: Config, log: Logger): Promise<Running> {
  const onNetwork = configured.upstream === undefined ? demoConfig(configured, log) : undefined;
  const config = onNetwork?.config ?? configured;
  const demo: Demo | undefined =
    onNetwork === undefined ? undefined : await startDemo(config, publicUrlOf(config), log);
  const gateway = buildGateway(config, {
    log,
    ...(demo !== undefined && { upstream: demo.upstream, mqttPortFallback: demo.mqttPortFallback }),
  });
  try {
    const at = await gateway.start();
    if (demo !== undefined) {
      await writeDemoState({
        mqttUrl: at.mqttUrl,
        publicUrl: at.publicUrl,
        topicPrefix: config.topicPrefix,
        deviceAuth: config.deviceAuth,
        pid: process.pid,
        // only the published demo key is ever written down
        ...(config.deviceKey === undefined && { deviceKey: DEMO_DEVICE_KEY }),
      });
    }
    return {
      gateway,
      banner:
        demo === undefined || onNetwork === undefined
          ? undefined
          : banner(gateway, at, demo, onNetwork.address),
      async close() {
        await gateway.close();
        if (demo !== undefined) {
          await removeDemoState();
          await demo.close();
        }
      },
    };
  } catch (err) {
    await gateway.close();
    await demo?.close();
    throw err;
  }
}

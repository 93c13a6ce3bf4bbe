/**
 * `devicegate devices revoke|restore <deviceId>... | list-revoked`: changes the revoked set in the store the
 * configuration names (README.md, "Security"). The running instances hear each change (Redis pub/sub) and kick the
 * device, revoke its refresh token at the upstream and end its pending flows. Needs `DEVICEGATE_REDIS_URL`: the
 * memory store lives inside one gateway process, whose admin API is the way to reach it.
 */
import type { DestinationStream } from 'pino';
import { ConfigError, type Config, loadConfig } from '../config/index.ts';
import { deriveKeys, randomSecret } from '../core/crypto.ts';
import { ID_PATTERN } from '../core/protocol.ts';
import { openRedisClient } from '../gateway/store.ts';
import { createLogger } from '../observability/log.ts';
import { RevokedDevices } from '../service/revocations.ts';
import { flowCodec } from '../store/codec.ts';
import { RedisStore } from '../store/redis/index.ts';
import type { CommandResult } from './commands.ts';

export const DEVICES_USAGE =
  'usage: devicegate devices revoke|restore <deviceId>... | devices list-revoked\n';

/** Runs the subcommand; the audit lines go to `logTo` (JSON lines, like the gateway's). */
export async function devicesCommand(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  logTo?: DestinationStream,
): Promise<CommandResult> {
  const [action, ...ids] = args;
  const listing = action === 'list-revoked' && ids.length === 0;
  if (!listing && (ids.length === 0 || (action !== 'revoke' && action !== 'restore'))) {
    return { out: DEVICES_USAGE, code: 2 };
  }
  const bad = ids.filter((id) => !ID_PATTERN.test(id));
  if (bad.length > 0) return { out: `invalid device id(s): ${bad.join(', ')}\n`, code: 2 };
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { out: `${err.message}\n`, code: 2 };
  }
  if (config.redis === undefined) {
    return {
      out: 'devices: DEVICEGATE_REDIS_URL is unset; the memory store lives inside the gateway process: use its admin API (DEVICEGATE_ADMIN_PORT)\n',
      code: 2,
    };
  }
  const redis = openRedisClient(config.redis);
  try {
    // revocations never read a flow, so the codec's key does not matter here
    const store = new RedisStore({
      redis,
      keyPrefix: config.redis.keyPrefix,
      codec: flowCodec(deriveKeys(config.secret ?? randomSecret())),
    });
    const devices = new RevokedDevices({ store, log: createLogger(config.logLevel, logTo) });
    if (listing) return { out: (await devices.list()).map((id) => `${id}\n`).join(''), code: 0 };
    const lines: string[] = [];
    for (const id of ids) {
      const changed = action === 'revoke' ? await devices.revoke(id) : await devices.restore(id);
      lines.push(`${id}: ${action === 'revoke' ? 'revoked' : 'restored'}${changed ? '' : ' (no change)'}`);
    }
    return { out: `${lines.join('\n')}\n`, code: 0 };
  } finally {
    redis.disconnect();
  }
}

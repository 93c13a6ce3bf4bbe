/**
 * The Redis server's `maxmemory-policy`. Any policy but `noeviction` lets Redis delete keys when memory runs out: a
 * flow, its lease or its schedule entry would vanish without an error, and the device would wait until it gives up.
 * With `noeviction` a full Redis refuses writes, which the gateway reports (`temporarily_unavailable`).
 */
import type { Redis } from 'ioredis';

/**
 * The policy (`CONFIG GET maxmemory-policy`), or `undefined` when the server refuses CONFIG (renamed or disabled on
 * some managed Redis, or not allowed to this user by an ACL). A connection failure rejects.
 */
export async function evictionPolicy(redis: Redis): Promise<string | undefined> {
  let reply: unknown;
  try {
    reply = await redis.config('GET', 'maxmemory-policy');
  } catch (err) {
    // A reply from the server (ioredis' ReplyError) means it refused the command; anything else is an outage.
    if (err instanceof Error && err.name === 'ReplyError') return undefined;
    throw err;
  }
  const value: unknown = Array.isArray(reply) ? reply[1] : undefined;
  return typeof value === 'string' ? value : undefined;
}

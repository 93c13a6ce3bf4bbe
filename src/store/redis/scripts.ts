/**
 * Loads the Lua scripts of ./lua/ once and runs them with EVALSHA, falling back to EVAL when the server answers
 * NOSCRIPT (after a restart or a SCRIPT FLUSH). The borrowed client is not modified (no `defineCommand`).
 * The number of keys a script takes is in its file name (`update-2.lua` takes 2); `run` checks it.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';

export interface LuaScript {
  readonly file: string;
  readonly numberOfKeys: number;
  readonly lua: string;
  readonly sha: string;
}

/**
 * Where the .lua files are: beside this module when run from the sources, else the source tree when run from
 * `dist/` (tsc does not copy them).
 */
const LUA_DIRS = [
  new URL('./lua/', import.meta.url),
  new URL('../../../../src/store/redis/lua/', import.meta.url),
];

function load(file: string): LuaScript {
  const match = /-(\d+)\.lua$/.exec(file);
  if (match === null) throw new Error(`${file}: the key count must end the file name (name-<keys>.lua)`);
  const dir = LUA_DIRS.find((d) => existsSync(fileURLToPath(new URL(file, d))));
  if (dir === undefined) throw new Error(`Lua script ${file} not found`);
  const lua = readFileSync(new URL(file, dir), 'utf8');
  return { file, numberOfKeys: Number(match[1]), lua, sha: createHash('sha1').update(lua).digest('hex') };
}

export const scripts = {
  create: load('create-4.lua'),
  update: load('update-2.lua'),
  claim: load('claim-1.lua'),
  lease: load('lease-1.lua'),
  unlease: load('unlease-1.lua'),
} as const;

/** Runs `script` atomically on the server. Returns the raw reply; callers turn it into typed results. */
export function run(
  redis: Redis,
  script: LuaScript,
  keys: readonly string[],
  args: ReadonlyArray<string | number>,
): Promise<unknown> {
  if (keys.length !== script.numberOfKeys) {
    return Promise.reject(new Error(`${script.file} takes ${script.numberOfKeys} keys, got ${keys.length}`));
  }
  return redis.evalsha(script.sha, keys.length, ...keys, ...args).catch((err: unknown) => {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    // EVAL also caches the script on the server, so the next EVALSHA finds it.
    return redis.eval(script.lua, keys.length, ...keys, ...args);
  });
}

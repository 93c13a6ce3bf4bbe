// Copies the non-TypeScript files the gateway reads at run time (the Lua scripts of the Redis store) next to the
// build, where src/store/redis/scripts.ts looks for them.
import { cpSync } from 'node:fs';

cpSync('src/store/redis/lua', 'dist/src/store/redis/lua', { recursive: true });

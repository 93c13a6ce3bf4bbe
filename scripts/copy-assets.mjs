// Copies the non-TypeScript files the gateway reads at run time (Lua scripts, page assets) next to the build.
import { cpSync, existsSync } from 'node:fs';

for (const dir of ['src/store/redis/lua', 'src/web/static']) {
  if (existsSync(dir)) cpSync(dir, `dist/${dir}`, { recursive: true });
}

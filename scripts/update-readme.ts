// Regenerates the README's generated tables (configuration, error codes): `npx tsx scripts/update-readme.ts`.
import { readFileSync, writeFileSync } from 'node:fs';
import { configTable, errorTable } from '../src/config/docs.ts';

/** Replaces what lies between `<!-- {name}:start ... -->` and `<!-- {name}:end -->` with `body`. */
function replaceBetween(text: string, name: string, body: string): string {
  const start = new RegExp(`<!-- ${name}:start[^>]*-->\\n`).exec(text);
  const end = text.indexOf(`<!-- ${name}:end -->`);
  if (start === null || end < 0) throw new Error(`README.md has no ${name} markers`);
  return text.slice(0, start.index + start[0].length) + body + text.slice(end);
}

const readme = readFileSync('README.md', 'utf8');
writeFileSync(
  'README.md',
  replaceBetween(replaceBetween(readme, 'config-table', configTable()), 'error-table', errorTable()),
);

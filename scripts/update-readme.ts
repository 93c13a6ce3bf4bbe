// Regenerates the README's configuration table from the config schema: `npx tsx scripts/update-readme.ts`.
import { readFileSync, writeFileSync } from 'node:fs';
import { configTable } from '../src/config/docs.ts';

const start = /<!-- config-table:start[^>]*-->\n/;
const end = '<!-- config-table:end -->';
const readme = readFileSync('README.md', 'utf8');
const m = start.exec(readme);
const e = readme.indexOf(end);
if (m === null || e < 0) throw new Error('README.md has no config-table markers');
writeFileSync('README.md', readme.slice(0, m.index + m[0].length) + configTable() + readme.slice(e));

/** The README documents what the code does: the configuration table and the error codes (fastify's habit). */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configTable, errorTable } from '../../src/config/docs.ts';
import { OAUTH_ERROR_CODES } from '../../src/core/errors.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('holds the configuration table generated from the schema (npx tsx scripts/update-readme.ts)', () => {
    expect(readme).toContain(configTable());
  });

  it('documents every error code, and every documented code exists', () => {
    const table = readme.slice(
      readme.indexOf('<!-- error-table:start -->'),
      readme.indexOf('<!-- error-table:end -->'),
    );
    const documented = [...table.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
    expect([...documented].sort()).toEqual([...OAUTH_ERROR_CODES].sort());
    // and says when each happens, in the words of src/core/errors.ts (npx tsx scripts/update-readme.ts)
    expect(readme).toContain(errorTable());
  });

  it('gives the two commands, and .ci/run runs only commands the README gives', () => {
    expect(readme).toContain('npm ci && npm start');
    const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8');
    const commands = ci.split('\n').filter((l) => /^[a-z]/.test(l) && !/^(set|cd) /.test(l));
    expect(commands).toEqual(['npm ci', 'npm test', 'npm run test:node24']);
    for (const c of commands) expect(readme).toContain(`\`${c}\``);
  });

  it('builds the image on the Node the README names, which package.json engines allow', () => {
    const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
    const froms = [...dockerfile.matchAll(/^FROM node:(\d+)-bookworm-slim/gm)].map((m) => m[1]);
    expect(froms).toEqual(['24', '24']);
    expect(readme).toContain('Node.js 24');
  });
});

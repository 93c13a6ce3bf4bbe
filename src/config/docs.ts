/** The README's generated tables: configuration (from the schema's own documentation) and error codes. */
import { OAUTH_ERROR_CODES, OAUTH_ERROR_MEANINGS } from '../core/errors.ts';
import { configDocs } from './schema.ts';

export function configTable(): string {
  const rows = configDocs.map(
    (d) =>
      `| \`${d.name}\` | ${d.default === undefined ? '' : `\`${d.default}\``} | ${d.doc.replaceAll('|', '\\|')} |`,
  );
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n') + '\n';
}

/** The README's error table: every code a device can get, and when. */
export function errorTable(): string {
  const rows = OAUTH_ERROR_CODES.map((code) => `| \`${code}\` | ${OAUTH_ERROR_MEANINGS[code]} |`);
  return ['| error code | when |', '|---|---|', ...rows].join('\n') + '\n';
}

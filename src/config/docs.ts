/** The configuration table of the README, rendered from the schema's own documentation. */
import { configDocs } from './schema.ts';

export function configTable(): string {
  const rows = configDocs.map(
    (d) =>
      `| \`${d.name}\` | ${d.default === undefined ? '' : `\`${d.default}\``} | ${d.doc.replaceAll('|', '\\|')} |`,
  );
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n') + '\n';
}

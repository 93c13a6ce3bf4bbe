/**
 * What a scenario returns, and the one table `npm run bench` prints: scenario, metric, devicegate value, baseline
 * value, ratio, goal, met?.
 */
import type { ProfileSummary } from './profile.ts';
import type { CpuReport } from './procs.ts';

export interface Row {
  metric: string;
  unit: string;
  devicegate: number;
  /** the same quantity measured in the same run without devicegate (or its minimum); absent when none applies */
  baseline?: number;
  /** how the ratio is formed: devicegate ÷ baseline (default) or baseline ÷ devicegate (`"baseline/devicegate"`) */
  ratioOf?: 'devicegate/baseline' | 'baseline/devicegate';
  /** the goal in words, e.g. `≥ 0.5 × baseline` */
  goal?: string;
  /** whether the goal was met; undefined when the row has no goal */
  met?: boolean;
}

export interface ScenarioResult {
  id: number;
  title: string;
  rows: Row[];
  /** what was run: counts, durations, configuration */
  setup: Record<string, unknown>;
  /** CPU use per process during the measured windows */
  cpu: Record<string, CpuReport>;
  /** anything else measured (per-run values, breakdowns) */
  details: Record<string, unknown>;
  notes: string[];
  profile?: ProfileSummary & { file?: string };
}

/** devicegate ÷ baseline, or the inverse, as the row says; NaN without a baseline. */
export function ratio(row: Row): number {
  if (row.baseline === undefined) return Number.NaN;
  const r =
    row.ratioOf === 'baseline/devicegate' ? row.baseline / row.devicegate : row.devicegate / row.baseline;
  return r;
}

export function formatValue(value: number | undefined, unit: string): string {
  if (value === undefined) return '';
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  const text = value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  return unit === '' ? text : `${text} ${unit}`;
}

export function formatRatio(r: number): string {
  if (!Number.isFinite(r)) return '';
  if (r >= 100) return `${Math.round(r).toLocaleString('en-US')}×`;
  if (r >= 10) return `${r.toFixed(1)}×`;
  return `${r.toFixed(2)}×`;
}

export function metText(met: boolean | undefined): string {
  return met === undefined ? '' : met ? 'yes' : 'NO';
}

/** The table as aligned plain text. */
export function renderTable(results: readonly ScenarioResult[]): string {
  const header = ['scenario', 'metric', 'devicegate', 'baseline', 'ratio', 'goal', 'met?'];
  const lines: string[][] = [header];
  for (const s of results) {
    for (const row of s.rows) {
      lines.push([
        `${s.id} ${s.title}`,
        row.metric,
        formatValue(row.devicegate, row.unit),
        formatValue(row.baseline, row.unit),
        formatRatio(ratio(row)),
        row.goal ?? '',
        metText(row.met),
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const fmt = (l: string[]) =>
    l
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [fmt(lines[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.slice(1).map(fmt)].join('\n');
}

/** The table as Markdown (for BENCHMARKS.md). */
export function renderMarkdown(results: readonly ScenarioResult[]): string {
  const out = [
    '| scenario | metric | devicegate | baseline | ratio | goal | met? |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const s of results) {
    for (const row of s.rows) {
      out.push(
        `| ${s.id} ${s.title} | ${row.metric} | ${formatValue(row.devicegate, row.unit)} | ${formatValue(
          row.baseline,
          row.unit,
        )} | ${formatRatio(ratio(row))} | ${row.goal ?? ''} | ${metText(row.met)} |`,
      );
    }
  }
  return out.join('\n');
}

/** The median of a non-empty list (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * `npm run bench` — the benchmark suite (BENCHMARKS.md explains the method). Runs the scenarios in order, each with
 * its own processes (a private redis-server, gateway / baseline / fake-upstream / load-generator children) on
 * 127.0.0.1, stops every process it started, prints one table and writes bench/results/latest.json.
 *
 *   npm run bench                         every scenario (about 6 minutes)
 *   npm run bench -- --scenario 1         only scenario 1 (repeat or comma-separate for more: --scenario 2,6)
 *   npm run bench -- --quick              shorter runs and smaller counts (a smoke run)
 *   npm run bench -- --flows 1000000      scenario 4 with a million pending flows (default 100 000)
 *   npm run bench -- --no-profile         skip the CPU profiles
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stopAll as stopHelperProcesses } from '../test/helpers/procs.ts';
import type { BenchContext, BenchOptions } from './lib/context.ts';
import { REPO_ROOT, stopAllHosts } from './lib/procs.ts';
import { type ScenarioResult, renderMarkdown, renderTable } from './lib/report.ts';
import { flowStarts } from './scenarios/s1-flow-starts.ts';
import { approvalToToken } from './scenarios/s2-approval-to-token.ts';
import { alternative } from './scenarios/s3-alternative.ts';
import { pendingAtScale } from './scenarios/s4-pending-scale.ts';
import { connections } from './scenarios/s5-connections.ts';
import { upstreamEfficiency } from './scenarios/s6-upstream-efficiency.ts';

type Scenario = (ctx: BenchContext) => Promise<ScenarioResult>;

const SCENARIOS: Record<number, { title: string; run: Scenario }> = {
  1: { title: 'flow starts per second', run: flowStarts },
  2: { title: 'approval to token', run: approvalToToken },
  3: { title: 'the alternative: RFC 8628 over HTTP, polling', run: alternative },
  4: { title: 'pending flows at scale', run: pendingAtScale },
  5: { title: 'connections', run: connections },
  6: { title: 'upstream efficiency (relay, 3 instances)', run: upstreamEfficiency },
};

export const USAGE = `usage: npm run bench -- [--scenario N[,N...]] [--quick] [--flows N] [--no-profile]`;

/** Parses the command line (exported for tests); throws with a readable message on bad input. */
export function parseBenchArgs(argv: readonly string[], resultsDir: string): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      scenario: { type: 'string', multiple: true, short: 's' },
      quick: { type: 'boolean', default: false },
      flows: { type: 'string' },
      'no-profile': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) throw new Error(USAGE);
  const ids = (values.scenario ?? []).flatMap((s) => s.split(',')).map((s) => Number(s.trim()));
  for (const id of ids) {
    if (!Number.isInteger(id) || SCENARIOS[id] === undefined) {
      throw new Error(`--scenario ${id}: choose from ${Object.keys(SCENARIOS).join(', ')}`);
    }
  }
  const flows = values.flows === undefined ? undefined : Number(values.flows.replaceAll('_', ''));
  if (flows !== undefined && !(Number.isInteger(flows) && flows >= 1000 && flows <= 5_000_000)) {
    throw new Error('--flows must be a whole number from 1000 to 5000000');
  }
  const quick = values.quick;
  return {
    quick,
    flows: flows ?? (quick ? 20_000 : 100_000),
    scenarios: ids.length > 0 ? [...new Set(ids)] : Object.keys(SCENARIOS).map(Number),
    profile: !values['no-profile'],
    resultsDir,
  };
}

/** How long a scenario may run before it is abandoned (its processes are stopped and the run goes on). */
function scenarioLimitMs(id: number, o: BenchOptions): number {
  if (id === 4) return Math.max(5 * 60_000, (o.flows / 1000) * 3000);
  if (id === 3) return 5 * 60_000;
  return 4 * 60_000;
}

/** The machine and the versions the numbers were taken with. */
export async function machineInfo(): Promise<Record<string, string | number>> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const version = (cmd: string, args: string[], re: RegExp) => {
    try {
      const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return re.exec(out)?.[1] ?? out.trim().split('\n')[0]!;
    } catch (err) {
      const e = err as { stdout?: string };
      return (e.stdout && re.exec(e.stdout)?.[1]) ?? 'not found';
    }
  };
  const pkg = async (name: string) => {
    const text = await readFile(path.join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8').catch(
      () => '',
    );
    return text === '' ? 'missing' : (JSON.parse(text) as { version: string }).version;
  };
  return {
    nproc: os.availableParallelism(),
    cpu: model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    redis: version('redis-server', ['--version'], /v=(\S+)/),
    mosquitto: version('mosquitto', ['-h'], /mosquitto version (\S+)/),
    aedes: await pkg('aedes'),
    mqtt: await pkg('mqtt'),
    ioredis: await pkg('ioredis'),
    undici: await pkg('undici'),
    'oidc-provider': await pkg('oidc-provider'),
    loadAverageAtStart: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
  };
}

async function main(): Promise<number> {
  const resultsDir = path.join(REPO_ROOT, 'bench', 'results');
  let options: BenchOptions;
  try {
    options = parseBenchArgs(process.argv.slice(2), resultsDir);
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    return 2;
  }
  await mkdir(resultsDir, { recursive: true });
  const machine = await machineInfo();
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const startedAt = new Date();
  console.log(`devicegate benchmarks — ${command}`);
  console.log(
    `machine: ${machine.nproc} cores, ${machine.cpu}, node ${machine.node}, redis ${machine.redis}, mosquitto ${machine.mosquitto}; load ${machine.loadAverageAtStart}`,
  );
  const ctx: BenchContext = { ...options, log: (m) => console.log(m) };
  const results: ScenarioResult[] = [];
  const failures: Array<{ id: number; error: string }> = [];
  for (const id of options.scenarios) {
    const s = SCENARIOS[id]!;
    const t0 = performance.now();
    console.log(`\n[${id}] ${s.title}`);
    let watchdog: NodeJS.Timeout | undefined;
    try {
      const limitMs = scenarioLimitMs(id, options);
      const r = await Promise.race([
        s.run(ctx),
        new Promise<never>((_, reject) => {
          watchdog = setTimeout(
            () => reject(new Error(`scenario ${id} did not finish within ${limitMs / 1000} s`)),
            limitMs,
          );
        }),
      ]);
      results.push(r);
      for (const note of r.notes) console.log(`  note: ${note}`);
    } catch (err) {
      const error = err instanceof Error ? (err.stack ?? err.message) : String(err);
      failures.push({ id, error });
      console.error(`  scenario ${id} failed: ${error}`);
    } finally {
      clearTimeout(watchdog);
      await stopAllHosts();
      await stopHelperProcesses();
    }
    console.log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  const elapsedSeconds = Math.round((Date.now() - startedAt.getTime()) / 1000);
  console.log(`\n${renderTable(results)}\n`);
  for (const r of results) {
    if (r.profile === undefined) continue;
    console.log(
      `scenario ${r.id} gateway CPU profile (${r.profile.file ?? ''}), busy ${(100 - r.profile.idlePct).toFixed(0)}%:`,
    );
    for (const a of r.profile.byArea.slice(0, 8))
      console.log(`  ${a.pct.toFixed(1).padStart(5)}%  ${a.name}`);
    console.log('  top frames:');
    for (const f of r.profile.top.slice(0, 10)) console.log(`  ${f.pct.toFixed(1).padStart(5)}%  ${f.name}`);
  }
  const out = {
    command,
    startedAt: startedAt.toISOString(),
    elapsedSeconds,
    options: { ...options, resultsDir: path.relative(REPO_ROOT, options.resultsDir) },
    machine,
    results,
    failures,
    markdown: renderMarkdown(results),
  };
  const file = path.join(resultsDir, 'latest.json');
  await writeFile(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`results: ${path.relative(process.cwd(), file)} (${elapsedSeconds} s)`);
  return failures.length > 0 ? 1 : 0;
}

const interrupt = () => {
  console.error('\ninterrupted: stopping every process the benchmark started');
  void Promise.allSettled([stopAllHosts(), stopHelperProcesses()]).finally(() => process.exit(130));
};
process.once('SIGINT', interrupt);
process.once('SIGTERM', interrupt);

process.exit(await main());

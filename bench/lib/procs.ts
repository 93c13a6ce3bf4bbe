/**
 * The parent side of the benchmark processes: spawning hosts (./host.ts) with an IPC channel, reading their CPU time
 * and RSS from /proc, and the machine-wide CPU use (to tell how much of it belonged to processes the benchmark did not
 * start). Every process started here is stopped by its own PID.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HostRequest } from './host.ts';

const HOST_FILE = fileURLToPath(new URL('./host.ts', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface Host {
  readonly name: string;
  readonly pid: number;
  /** Sends one request and resolves with its result (rejects with the child's error). */
  call<T = unknown>(req: HostRequest, timeoutMs?: number): Promise<T>;
  /** Asks the host to close what it started, then ends the process (SIGKILL after 5 s). */
  stop(): Promise<void>;
}

const hosts = new Set<Host>();

/**
 * Starts a host process (Node with `--expose-gc` and tsx) and waits until it is ready for requests. `root` runs the
 * host of another checkout of the project (to compare two versions of the code in one run).
 */
export async function spawnHost(name: string, nodeArgs: string[] = [], root?: string): Promise<Host> {
  const hostFile = root === undefined ? HOST_FILE : `${root.replace(/\/$/, '')}/bench/lib/host.ts`;
  const child: ChildProcess = spawn(
    process.execPath,
    ['--expose-gc', ...nodeArgs, '--import', 'tsx', hostFile],
    {
      cwd: root ?? REPO_ROOT,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { ...process.env, NODE_ENV: 'development' },
    },
  );
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let nextId = 1;
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = true;
      for (const p of pending.values()) p.reject(new Error(`${name} exited (${code ?? signal})`));
      pending.clear();
      resolve();
    }),
  );
  const ready = new Promise<void>((resolve, reject) => {
    pending.set(0, { resolve: () => resolve(), reject });
  });
  child.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
    const p = pending.get(m.id);
    if (p === undefined) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(`${name}: ${m.error}`));
  });
  await ready;
  const host: Host = {
    name,
    pid: child.pid!,
    call<T>(req: HostRequest, timeoutMs = 600_000): Promise<T> {
      if (exited) return Promise.reject(new Error(`${name} is not running`));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${name}: ${req.op} did not answer within ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        child.send({ id, ...req });
      });
    },
    async stop() {
      hosts.delete(host);
      if (exited) return;
      await host.call({ op: 'stop' }, 15_000).catch(() => undefined);
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.disconnect();
      await exit;
      clearTimeout(kill);
    },
  };
  hosts.add(host);
  return host;
}

/** Stops every host still running. */
export async function stopAllHosts(): Promise<void> {
  await Promise.allSettled([...hosts].map((h) => h.stop()));
}

/** CPU seconds (user + system) a process has used so far; NaN once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces; fields after it are space-separated
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** Resident set size in bytes (VmRSS); NaN once the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? Number.NaN : Number(m[1]) * 1024;
  } catch {
    return Number.NaN;
  }
}

/** Busy, stolen and total CPU seconds of the whole machine (all cores) from /proc/stat. */
function machineCpu(): { busy: number; steal: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const steal = v[7] ?? 0;
  return { busy: (total - idle - steal) / CLK_TCK, steal: steal / CLK_TCK, total: total / CLK_TCK };
}

export interface CpuReport {
  wallSeconds: number;
  /** CPU per watched process, percent of one core */
  processes: Record<string, number>;
  /** the whole machine, percent of one core (200 = both cores busy) */
  machine: number;
  /** machine CPU not used by any watched process: other engineers' work, the kernel, etc. (percent of one core) */
  foreign: number;
  /** CPU time the hypervisor gave to other guests while ours wanted it (percent of one core) */
  steal: number;
}

/** Measures CPU use of named processes and of the machine between `start` and `stop`. */
export class CpuMeter {
  readonly #pids: Record<string, number>;
  #t0 = 0;
  #cpu0: Record<string, number> = {};
  #machine0 = { busy: 0, steal: 0, total: 0 };

  constructor(pids: Record<string, number>) {
    this.#pids = pids;
  }

  start(): this {
    this.#t0 = performance.now();
    this.#machine0 = machineCpu();
    for (const [name, pid] of Object.entries(this.#pids)) this.#cpu0[name] = cpuSeconds(pid);
    return this;
  }

  stop(): CpuReport {
    const wall = (performance.now() - this.#t0) / 1000;
    const m = machineCpu();
    const processes: Record<string, number> = {};
    let ours = 0;
    for (const [name, pid] of Object.entries(this.#pids)) {
      const used = cpuSeconds(pid) - (this.#cpu0[name] ?? 0);
      processes[name] = Math.round((100 * used) / wall);
      if (Number.isFinite(used)) ours += used;
    }
    const machine = (100 * (m.busy - this.#machine0.busy)) / wall;
    return {
      wallSeconds: Math.round(wall * 10) / 10,
      processes,
      machine: Math.round(machine),
      foreign: Math.max(0, Math.round(machine - (100 * ours) / wall)),
      steal: Math.round((100 * (m.steal - this.#machine0.steal)) / wall),
    };
  }
}

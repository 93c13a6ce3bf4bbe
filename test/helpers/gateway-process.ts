/**
 * The gateway as a real child process (`node --import tsx src/main.ts`, cwd the repository), for tests that kill,
 * pause and restart instances. Its environment is exactly the `DEVICEGATE_*` set the test passes plus `PATH`; its
 * stdout and stderr (pino JSON lines, plus the banner) are captured for assertions. Every process started here is
 * stopped by {@link stopAllGateways} (call it from afterAll).
 *
 * Demo mode writes `.devicegate/demo.json` into the working directory: pass a configured upstream
 * (`DEVICEGATE_UPSTREAM_ISSUER`), which {@link startGatewayProcess} insists on, so the repository is never touched.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './procs.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** One parsed JSON log line (pino: `level` number, `time` ms, `msg`, and the call's fields). */
export type LogLine = Record<string, unknown> & { level?: number; msg?: string; time?: number };

export interface GatewayExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface GatewayProcess {
  /** a label for messages (e.g. `gw-1`) */
  readonly name: string;
  /** the node process itself: the pid in this instance's lease tokens */
  readonly pid: number;
  /** `http://127.0.0.1:{port}` */
  readonly httpUrl: string;
  /** the environment it was started with (without PATH) */
  readonly env: Readonly<Record<string, string>>;
  /** true once the process has exited */
  readonly exited: boolean;
  /** Sends a signal (default SIGKILL). SIGSTOP/SIGCONT pause and resume it. No-op once it has exited. */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves when the process has exited; rejects after `timeoutMs` (default 15 s). */
  waitExit(timeoutMs?: number): Promise<GatewayExit>;
  /** Every JSON line it wrote so far (stdout and stderr), in order. */
  logs(): LogLine[];
  /** Everything it wrote, raw (non-JSON lines included). */
  output(): string;
  /** What it wrote to stderr (the JSON log goes to stdout). */
  stderr(): string;
  /** The first log line from index `from` on that matches; waits up to `timeoutMs` (default 10 s). */
  waitForLog(match: (l: LogLine) => boolean, opts?: { timeoutMs?: number; from?: number }): Promise<LogLine>;
  /** `GET /readyz`: HTTP status and parsed body. */
  readyz(): Promise<{ status: number; body: ReadyBody }>;
  /** `GET /metrics` as text. */
  metrics(): Promise<string>;
  /** SIGTERM, then SIGKILL if still alive after `graceMs` (default 10 s); resolves once it has exited. */
  stop(graceMs?: number): Promise<GatewayExit>;
  /** Stops reading its stdout and stderr: the pipes fill up and its writes to them fail with EAGAIN. */
  stopReading(): void;
  /** Closes the reading end of its stdout and stderr: its writes to them fail with EPIPE. */
  closeOutput(): void;
}

export interface ReadyBody {
  status: string;
  checks: Record<string, { ok: boolean; detail: string }>;
}

export interface GatewayProcessOptions {
  /** `DEVICEGATE_*` variables (and `NODE_ENV` if wanted). `DEVICEGATE_HTTP_PORT` defaults to a free port. */
  env: Record<string, string>;
  name?: string;
  /** also wait until `/readyz` answers 200 (default true) */
  waitReady?: boolean;
  /** deadline for start-up (default 20 s: tsx compiles the sources first) */
  timeoutMs?: number;
}

const running = new Set<GatewayProcess>();
let counter = 0;

/**
 * Starts one gateway process and resolves once `GET /healthz` answers (and, unless `waitReady: false`, `/readyz` is
 * 200). Rejects with the process's output when it exits or does not come up in time.
 */
export async function startGatewayProcess(o: GatewayProcessOptions): Promise<GatewayProcess> {
  if (o.env.DEVICEGATE_UPSTREAM_ISSUER === undefined) {
    throw new Error(
      'startGatewayProcess: configure an upstream (demo mode would write .devicegate/demo.json)',
    );
  }
  const name = o.name ?? `gw-${++counter}`;
  const port = o.env.DEVICEGATE_HTTP_PORT ?? '0';
  const env: Record<string, string> = {
    DEVICEGATE_HTTP_HOST: '127.0.0.1',
    ...o.env,
    DEVICEGATE_HTTP_PORT: port === '0' ? String(await freePort()) : port,
  };
  const httpUrl = `http://127.0.0.1:${env.DEVICEGATE_HTTP_PORT}`;
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO,
    env: { ...env, PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`${name}: could not spawn node`);
  const pid = child.pid;

  let raw = '';
  const lines: LogLine[] = [];
  const listeners = new Set<() => void>();
  let pendingText = '';
  const onData = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    raw += text;
    pendingText += text;
    const parts = pendingText.split('\n');
    pendingText = parts.pop() ?? '';
    for (const line of parts) {
      if (!line.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(line) as LogLine);
      } catch {
        // a line that only looks like JSON: kept in output() only
      }
    }
    for (const l of listeners) l();
  };
  let errText = '';
  child.stdout!.on('data', onData);
  child.stderr!.on('data', (chunk: Buffer) => {
    errText += chunk.toString('utf8');
    onData(chunk);
  });

  let exit: GatewayExit | undefined;
  const exited = new Promise<GatewayExit>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      running.delete(handle);
      for (const l of listeners) l();
      resolve(exit);
    });
  });

  const waitForLog: GatewayProcess['waitForLog'] = (match, opts = {}) =>
    new Promise((resolve, reject) => {
      const from = opts.from ?? 0;
      const look = () => {
        for (let i = from; i < lines.length; i++) {
          if (match(lines[i]!)) {
            done();
            resolve(lines[i]!);
            return;
          }
        }
        if (exit !== undefined) {
          done();
          reject(new Error(`${name} exited (${exit.code ?? exit.signal}) first:\n${raw.slice(-3000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${name}: no matching log line within ${opts.timeoutMs ?? 10_000} ms`));
      }, opts.timeoutMs ?? 10_000);
      const done = () => {
        clearTimeout(timer);
        listeners.delete(look);
      };
      listeners.add(look);
      look();
    });

  const handle: GatewayProcess = {
    name,
    pid,
    httpUrl,
    env,
    get exited() {
      return exit !== undefined;
    },
    kill(signal = 'SIGKILL') {
      if (exit !== undefined) return;
      try {
        process.kill(pid, signal);
      } catch (err) {
        // it exited after all, and the exit event is still on its way
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    },
    waitExit(timeoutMs = 15_000) {
      let timer: NodeJS.Timeout | undefined;
      return Promise.race([
        exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`${name} still running after ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]).finally(() => clearTimeout(timer));
    },
    logs: () => lines,
    output: () => raw,
    stderr: () => errText,
    waitForLog,
    async readyz() {
      const res = await fetch(`${httpUrl}/readyz`);
      return { status: res.status, body: (await res.json()) as ReadyBody };
    },
    async metrics() {
      return (await fetch(`${httpUrl}/metrics`)).text();
    },
    stopReading() {
      child.stdout!.pause();
      child.stderr!.pause();
    },
    closeOutput() {
      child.stdout!.destroy();
      child.stderr!.destroy();
    },
    async stop(graceMs = 10_000) {
      if (exit !== undefined) return exit;
      // a paused process cannot handle SIGTERM: resume it first
      handle.kill('SIGCONT');
      handle.kill('SIGTERM');
      const timer = setTimeout(() => handle.kill('SIGKILL'), graceMs);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
  };
  running.add(handle);

  try {
    const timeoutMs = o.timeoutMs ?? 20_000;
    await waitFor(
      async () => {
        if (exit !== undefined) throw new Error(`${name} exited:\n${raw.slice(-3000)}`);
        const res = await fetch(`${httpUrl}/healthz`).catch(() => undefined);
        return res?.status === 200;
      },
      timeoutMs,
      `${name} /healthz`,
    );
    if (o.waitReady ?? true) {
      await waitFor(
        async () => (await handle.readyz().catch(() => undefined))?.status === 200,
        timeoutMs,
        `${name} /readyz`,
      );
    }
  } catch (err) {
    handle.kill('SIGKILL');
    await exited;
    throw err;
  }
  return handle;
}

/** Stops every gateway process still running (SIGCONT + SIGKILL: tests that care about SIGTERM do it themselves). */
export async function stopAllGateways(): Promise<void> {
  await Promise.allSettled(
    [...running].map(async (g) => {
      g.kill('SIGCONT');
      g.kill('SIGKILL');
      await g.waitExit(5000);
    }),
  );
  running.clear();
}

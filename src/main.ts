/**
 * Entry point: `npm start` / `devicegate`. Reads the environment, builds and starts the gateway (with the demo
 * identity provider when no upstream is configured), prints where everything listens, and shuts down cleanly on
 * SIGTERM / SIGINT (in-flight work finishes, leases are released, clients are disconnected).
 */
import type { Logger } from 'pino';
import { ConfigError, loadConfig, type Config } from './config/index.ts';
import { runCli } from './cli/commands.ts';
import { createLogger } from './observability/log.ts';
import { drained, survivingDeadPipe } from './observability/stdio.ts';

/** Longest a shutdown may take before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 15_000;
/** How long the last log lines may take to leave the process after a shutdown (a stalled reader loses them). */
const LOG_DRAIN_MS = 1000;

async function main(): Promise<void> {
  // a reader that went away must cost log lines, never the process
  survivingDeadPipe(process.stdout);
  survivingDeadPipe(process.stderr);
  // stdout carries the command's answer; audit lines of store changes go to stderr
  const result = await runCli(process.argv.slice(2), process.env, process.stderr);
  if (result !== undefined) {
    (result.code === 0 ? process.stdout : process.stderr).write(result.out);
    process.exitCode = result.code;
    return;
  }
  const config = configOrExit();
  const log = createLogger(config.logLevel);
  const { run } = await import('./run.ts');
  const running = await run(config, log);
  // stdout carries only JSON log lines; the demo's banner is for the person at the terminal
  if (running.banner !== undefined) process.stderr.write(running.banner);
  onSignals(log, running.close);
  // certificate renewal without a restart: new TLS connections get the new files, open ones stay
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'reloading the TLS certificate');
    running.gateway.reloadTls();
  });
}

function configOrExit(): Config {
  try {
    return loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`devicegate: ${err.message}\n`);
    process.exit(2);
  }
}

function onSignals(log: Logger, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    // nothing on the way out writes synchronously (src/observability/stdio.ts), so this timer can always fire
    setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS).unref();
    void close()
      .then(
        () => 0,
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          return 1;
        },
      )
      .then(async (code) => {
        await drained(process.stdout, LOG_DRAIN_MS);
        process.exit(code);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`devicegate: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

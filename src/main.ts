/**
 * Entry point: `npm start` / `devicegate`. Reads the environment, starts the gateway, prints where everything
 * listens, and shuts down cleanly on SIGTERM / SIGINT (in-flight work finishes, leases are released, clients are
 * disconnected).
 */
import { ConfigError, loadConfig } from './config/index.ts';
import { startGateway } from './gateway.ts';
import { banner } from './cli/banner.ts';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`devicegate: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const gateway = await startGateway({ config });
  process.stdout.write(banner(gateway));

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    gateway.log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    gateway.close().then(
      () => process.exit(0),
      (err: unknown) => {
        gateway.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`devicegate: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

/**
 * Entry point: `npm start` / `devicegate`. Reads the environment, starts the gateway, prints where everything
 * listens, and shuts down cleanly on SIGTERM / SIGINT (in-flight work finishes, leases are released, clients are
 * disconnected).
 */
import { ConfigError, loadConfig } from './config/index.ts';
import { banner } from './cli/banner.ts';
import { credentialsCommand } from './cli/credentials.ts';

async function main(): Promise<void> {
  const [command, ...args] = process.argv.slice(2);
  if (command === 'credentials') {
    const r = credentialsCommand(args, process.env);
    process.stdout.write(r.out);
    process.exit(r.code);
  }
  if (command !== undefined) {
    process.stderr.write(
      'usage: devicegate            run the gateway (configured by DEVICEGATE_* variables)\n',
    );
    process.stderr.write('       devicegate credentials [--mosquitto] <deviceId>...\n');
    process.exit(2);
  }
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
  const { startGateway } = await import('./gateway.ts');
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

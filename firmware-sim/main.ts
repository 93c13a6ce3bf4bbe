/**
 * `npm run sim -- --id tv-1` (one interactive device) or `npm run sim -- --fleet 200 --duration 10` (load).
 * `--help` lists every flag. This file only wires the process to {@link runCli}: argv, streams, Ctrl-C, exit code.
 */
import { runCli } from './cli.ts';

const controller = new AbortController();
let interrupted = false;
process.on('SIGINT', () => {
  // first Ctrl-C: cancel the request and exit 130; a second one exits at once
  if (interrupted) process.exit(130);
  interrupted = true;
  controller.abort();
});

const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
  signal: controller.signal,
});
process.exitCode = code;
// Everything the simulator opened is closed by now; this only guards against a straggling timer or socket.
setTimeout(() => process.exit(code), 1000).unref();

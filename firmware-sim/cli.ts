/**
 * The `npm run sim` command line: parses the flags (args.ts) and runs one interactive device (run-device.ts) or a
 * fleet (run-fleet.ts). `firmware-sim/main.ts` only wires the process (argv, stdout, Ctrl-C, exit code) to
 * {@link runCli}.
 */
import { EXIT, type SimArgs, UsageError, parseSimArgs, usage } from './args.ts';
import { runDevice } from './run-device.ts';
import { runFleet } from './run-fleet.ts';

export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown };
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** aborted on Ctrl-C: the device cancels its request and the CLI returns 130 */
  signal?: AbortSignal;
}

/** Runs the simulator with `argv` (without node and the script) and resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let args: SimArgs;
  try {
    args = await parseSimArgs(argv, io);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`sim: ${err.message}\nRun with --help for usage.\n`);
    return EXIT.usage;
  }
  switch (args.kind) {
    case 'help':
      io.stdout.write(usage());
      return EXIT.ok;
    case 'device':
      return runDevice(args, io);
    case 'fleet':
      return runFleet(args, io);
  }
}

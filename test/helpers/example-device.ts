/** The example devices of examples/ (C, Python) as child processes, for the tests that run them against a gateway. */
import { type ChildProcess, spawn } from 'node:child_process';

export interface ExampleDevice {
  child: ChildProcess;
  /** stdout and stderr so far */
  out: () => string;
  /** the exit code, once it has exited */
  exit: Promise<number | null>;
}

/** Runs `command` with only PATH and `env` in its environment: a device's secrets come from where the test says. */
export function runExampleDevice(
  command: string,
  args: readonly string[],
  env: Record<string, string>,
): ExampleDevice {
  const child = spawn(command, args, {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, exit };
}

/** The user code and verification_uri_complete an example device printed. */
export function shownCode(out: string): { userCode: string; uri: string } | undefined {
  const m = /^user_code: (\S+)$[\s\S]*^verification_uri_complete: (\S+)$/m.exec(out);
  return m === null ? undefined : { userCode: m[1]!, uri: m[2]! };
}

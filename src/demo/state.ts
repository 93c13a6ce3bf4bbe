/**
 * The demo state file: where a gateway in demo mode listens, written to `.devicegate/demo.json` in its working
 * directory so `npm run sim` on the same machine finds the broker without flags. One schema for the writer (the
 * gateway) and the reader (the simulator). It holds only public values: the only key ever written is the published
 * demo fleet key, so a configured `DEVICEGATE_DEVICE_KEY` never reaches the disk (docs/security.md).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { DEMO_DEVICE_KEY } from '../core/crypto.ts';
import { isMqttUrl } from '../core/protocol.ts';

/** Where the demo state lives, relative to the directory the gateway (and the simulator) runs in. */
export const DEMO_STATE_FILE = path.join('.devicegate', 'demo.json');

export const demoStateSchema = z
  .object({
    /** what devices connect to (the embedded broker, or the external one) */
    mqttUrl: z
      .string()
      .refine(isMqttUrl, 'must be an MQTT URL (mqtt://, mqtts://, tcp://, tls://, ws://, wss://)'),
    /** where people open the code page */
    publicUrl: z.string().refine((v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol), {
      message: 'must be an http(s) URL',
    }),
    topicPrefix: z.string().min(1),
    deviceAuth: z.enum(['hmac', 'cert', 'none']),
    /** present only when the gateway runs with the published demo key: no other key is ever written down */
    deviceKey: z.literal(DEMO_DEVICE_KEY).optional(),
    /** the gateway process that wrote it: a file whose writer is gone (killed, so it could not remove it) is stale */
    pid: z.number().int().positive(),
  })
  .strict();

export type DemoState = z.infer<typeof demoStateSchema>;

/** The demo state file exists but cannot be used; `message` names the file and what is wrong with it. */
export class DemoStateError extends Error {
  readonly file: string;
  constructor(file: string, problem: string) {
    super(`${file} ${problem}; delete it or restart the gateway`);
    this.name = 'DemoStateError';
    this.file = file;
  }
}

/**
 * Validates `state` and writes it to `{dir}/.devicegate/demo.json` (owner-only permissions). Throws a zod error if
 * `state` does not match the schema, so nothing unreadable (or secret) is ever written.
 */
export async function writeDemoState(state: DemoState, dir: string = process.cwd()): Promise<void> {
  const checked = demoStateSchema.parse(state);
  const file = path.join(dir, DEMO_STATE_FILE);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(checked, null, 2)}\n`, { mode: 0o600 });
}

/** Removes the demo state file when the demo gateway stops, so no simulator is sent to a broker that is gone. */
export async function removeDemoState(dir: string = process.cwd()): Promise<void> {
  await rm(path.join(dir, DEMO_STATE_FILE), { force: true });
}

/** What {@link readDemoState} found: the state, or a file its writer left behind when it died (`stale`). */
export type DemoStateFile = { file: string; state: DemoState } | { file: string; stale: number };

/** Whether process `pid` exists (signal 0 checks without sending anything; EPERM: it exists, as another user's). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err instanceof Error && 'code' in err && err.code === 'EPERM';
  }
}

/**
 * Reads and validates `{dir}/.devicegate/demo.json`. Resolves `undefined` when there is no such file (no demo
 * gateway ran here), `{ file, stale: pid }` when the gateway that wrote it is no longer running; rejects with a
 * {@link DemoStateError} when it cannot be read, is not JSON, or does not match {@link demoStateSchema}.
 */
export async function readDemoState(
  dir: string,
  alive: (pid: number) => boolean = processAlive,
): Promise<DemoStateFile | undefined> {
  const file = path.join(dir, DEMO_STATE_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ENOENT') return undefined;
    throw new DemoStateError(file, `cannot be read (${err instanceof Error ? err.message : String(err)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new DemoStateError(file, 'is not JSON');
  }
  const result = demoStateSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue !== undefined && issue.path.length > 0 ? `"${issue.path.join('.')}": ` : '';
    throw new DemoStateError(file, `is not a demo state file (${where}${issue?.message ?? 'invalid'})`);
  }
  if (!alive(result.data.pid)) return { file, stale: result.data.pid };
  return { file, state: result.data };
}

// TEMPORARY until the device-client re-cut lands its version of this file.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const DEMO_STATE_FILE = path.join('.devicegate', 'demo.json');

export async function writeDemoState(info: Record<string, string>): Promise<void> {
  await mkdir(path.dirname(DEMO_STATE_FILE), { recursive: true });
  await writeFile(DEMO_STATE_FILE, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
}

export async function removeDemoState(): Promise<void> {
  await rm(DEMO_STATE_FILE, { force: true });
}

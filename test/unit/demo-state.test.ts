/**
 * The demo state file (src/demo/state.ts): what the gateway writes is what the simulator reads back, nothing but the
 * published demo key is ever written, and a missing or broken file is told apart.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO_DEVICE_KEY } from '../../src/core/crypto.ts';
import {
  DEMO_STATE_FILE,
  type DemoState,
  DemoStateError,
  readDemoState,
  writeDemoState,
} from '../../src/demo/state.ts';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-demo-state-'));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const state: DemoState = {
  mqttUrl: 'mqtt://127.0.0.1:1883',
  publicUrl: 'http://localhost:8080',
  topicPrefix: 'devicegate/v1',
  deviceAuth: 'hmac',
  deviceKey: DEMO_DEVICE_KEY,
  pid: process.pid,
};

describe('demo state file', () => {
  it('reads back what was written, owner-only', async () => {
    const dir = await tempDir();
    await writeDemoState(state, dir);
    const file = path.join(dir, DEMO_STATE_FILE);
    expect(await readDemoState(dir)).toEqual({ file, state });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('refuses to write any key but the published demo key', async () => {
    const dir = await tempDir();
    await expect(
      writeDemoState({ ...state, deviceKey: 'secret' as typeof DEMO_DEVICE_KEY }, dir),
    ).rejects.toThrow();
    await expect(readFile(path.join(dir, DEMO_STATE_FILE))).rejects.toThrow(/ENOENT/);
  });

  it('tells a file whose writer is gone (a killed gateway) apart as stale', async () => {
    const dir = await tempDir();
    await writeDemoState({ ...state, pid: 4242 }, dir);
    const file = path.join(dir, DEMO_STATE_FILE);
    expect(await readDemoState(dir, (pid) => pid !== 4242)).toEqual({ file, stale: 4242 });
    expect(await readDemoState(dir, () => true)).toEqual({ file, state: { ...state, pid: 4242 } });
  });

  it('is undefined when there is no file', async () => {
    expect(await readDemoState(await tempDir())).toBeUndefined();
  });

  it('rejects a file that is not JSON, or not the schema, naming the file', async () => {
    const dir = await tempDir();
    const file = path.join(dir, DEMO_STATE_FILE);
    await mkdir(path.dirname(file));
    await writeFile(file, '{ not json');
    await expect(readDemoState(dir)).rejects.toThrow(new DemoStateError(file, 'is not JSON'));
    await writeFile(file, JSON.stringify({ ...state, mqttUrl: 'http://x' }));
    await expect(readDemoState(dir)).rejects.toThrow(/is not a demo state file \("mqttUrl"/);
    await writeFile(file, JSON.stringify({ ...state, extra: 1 }));
    await expect(readDemoState(dir)).rejects.toThrow(DemoStateError);
  });
});

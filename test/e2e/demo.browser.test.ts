/**
 * The README's "Try it", as a new user does it: `npm start` (the gateway with no configuration: demo identity
 * provider, bridge mode, embedded broker), then `npm run sim -- --id tv-1` in a second terminal, then a person
 * approving in a browser at the URL the simulated device prints. Only the ports differ (free ones, so the test can
 * run beside anything), and both processes run in a scratch directory so the demo file stays out of the checkout.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chooseDemoAddress } from '../../src/demo/lan.ts';
import { DEMO_STATE_FILE } from '../../src/demo/state.ts';
import { launchBrowser, phoneContext } from '../helpers/browser.ts';
import { freePort, waitFor } from '../helpers/procs.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const procs: ChildProcess[] = [];
let browser: Browser;
let dir: string;

function start(
  script: string,
  args: string[],
  env: Record<string, string>,
): { proc: ChildProcess; out: () => string } {
  // tsx is resolved from the checkout: the processes run in a scratch directory
  const proc = spawn(
    process.execPath,
    ['--import', import.meta.resolve('tsx'), path.join(ROOT, script), ...args],
    {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  procs.push(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, out: () => out };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'dg-demo-'));
  browser = await launchBrowser();
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await browser?.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * What the demo will advertise on this machine: its LAN address when it has one (most machines here have eth0), so
 * the whole flow below then runs through that address as a phone on the same network would; else localhost, which
 * the same flow then proves as the fallback. No second machine, but the real interfaces and no loopback on the way.
 */
const address = chooseDemoAddress(networkInterfaces(), {
  publicUrl: undefined,
  lan: true,
  // the test's HTTP port is a free one, never 0
  httpPort: 8080,
});

describe('the demo of the README', () => {
  it(`npm start, npm run sim -- --id tv-1, approve in the browser at ${address.host}: the simulated device prints Authorized`, async () => {
    const env = {
      DEVICEGATE_HTTP_PORT: String(await freePort()),
      DEVICEGATE_DEMO_PORT: String(await freePort()),
      DEVICEGATE_MQTT_PORT: String(await freePort()),
      NODE_OPTIONS: '',
    };
    const gateway = start('src/main.ts', [], env);
    // the banner comes last, after the demo state file the simulator reads
    await waitFor(
      () => gateway.out().includes('npm run sim -- --id tv-1'),
      20_000,
      'the gateway banner',
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${gateway.out()}`);
    });
    expect(gateway.out()).toContain('DEMO MODE');
    expect(gateway.out()).toContain('npm run sim -- --id tv-1');
    // the banner says which address the demo uses and why
    expect(gateway.out()).toContain(`address            ${address.host}: ${address.reason}`);
    expect(gateway.out()).toContain(
      `web                http://${address.host}:${env.DEVICEGATE_HTTP_PORT}/device`,
    );

    // the simulator finds the broker and the demo key in .devicegate/demo.json, written by the gateway
    const sim = start('firmware-sim/main.ts', ['--id', 'tv-1'], {});
    const url = await waitFor(
      () =>
        new RegExp(
          `(http://${address.host.replaceAll('.', '\\.')}:\\d+/device\\?user_code=[A-Z-]+&k=[A-Za-z0-9_-]{30})`,
        ).exec(sim.out())?.[1],
      20_000,
      'the URL printed by the simulated device',
    );
    const code = /user_code=([A-Z]{4}-[A-Z]{4})/.exec(url)![1]!;
    expect(sim.out()).toContain(code);

    const context = await phoneContext(browser);
    try {
      const page = await context.newPage();
      // the printed (and QR) link opens the confirm page at once: no code to type, no Continue
      await page.goto(url);
      expect(await page.locator('h1').innerText()).toBe('Is this your device?');
      expect(await page.locator('main').innerText()).toContain(code);
      await page.getByRole('button', { name: 'Approve' }).click();
      // the sign-in page is the demo identity provider's, reached at the same address
      expect(new URL(page.url()).hostname).toBe(address.host);
      await page.locator('#username').fill('demo');
      await page.locator('#password').fill('demo');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Approve' }).click();
      await page.waitForURL(/\/device\/done\?result=authorized(&|$)/);
    } finally {
      await context.close();
    }

    const exit = await new Promise<number | null>((resolve) => {
      if (sim.proc.exitCode !== null) resolve(sim.proc.exitCode);
      else sim.proc.once('exit', (c) => resolve(c));
    });
    expect(sim.out()).toContain('Authorized');
    expect(exit).toBe(0);

    // SIGTERM: the gateway shuts down cleanly
    gateway.proc.kill('SIGTERM');
    const gwExit = await new Promise<number | null>((resolve) =>
      gateway.proc.once('exit', (c) => resolve(c)),
    );
    expect(gwExit).toBe(0);
    // and takes its state file along, so no simulator is sent to a broker that is gone
    expect(existsSync(path.join(dir, DEMO_STATE_FILE))).toBe(false);
  });
});

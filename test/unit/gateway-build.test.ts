/**
 * What building the graph says and how closing copes, without starting anything: the start-up warnings for
 * dangerous settings (docs/security.md, configuration), and a part that fails to close does not keep the others open.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { buildGateway } from '../../src/gateway/index.ts';
import { Closers } from '../../src/gateway/closers.ts';
import { createLogger } from '../../src/observability/log.ts';

function capture() {
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, log: createLogger('info', sink) };
}

describe('building the gateway', () => {
  it('warns about each dangerous setting in use: plain-http upstream, demo fleet key, random secret', async () => {
    const { lines, log } = capture();
    const config = loadConfig({
      DEVICEGATE_UPSTREAM_ISSUER: 'http://idp.example',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
      DEVICEGATE_ALLOW_INSECURE_UPSTREAM: 'true',
    });
    const gw = buildGateway(config, { log });
    await gw.close();
    const warnings = lines.filter((l) => l.level === 40).map((l) => l.msg);
    expect(warnings).toEqual([
      expect.stringContaining('DEVICEGATE_DEVICE_KEY is unset'),
      expect.stringContaining('DEVICEGATE_SECRET is unset'),
      'the upstream is plain http: tokens cross the network unencrypted',
    ]);
  });

  it('says nothing when the settings are production-grade', async () => {
    const { lines, log } = capture();
    const config = loadConfig({
      DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
      DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
      DEVICEGATE_DEVICE_KEY: 'k'.repeat(32),
      DEVICEGATE_SECRET: 's'.repeat(32),
    });
    const gw = buildGateway(config, { log });
    await gw.close();
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
  });
});

describe('closing', () => {
  it('closes every part newest first, logs a part that fails to close, and still closes the rest', async () => {
    const { lines, log } = capture();
    const closers = new Closers(log);
    const order: string[] = [];
    closers.push('store', async () => void order.push('store'));
    closers.push('transport', async () => {
      order.push('transport');
      throw new Error('socket already gone');
    });
    closers.push('http', async () => void order.push('http'));
    await closers.closeAll();
    expect(order).toEqual(['http', 'transport', 'store']);
    expect(lines).toEqual([expect.objectContaining({ level: 40, msg: 'close failed', part: 'transport' })]);
    await closers.closeAll(); // idempotent: nothing left to close
    expect(order).toHaveLength(3);
  });
});

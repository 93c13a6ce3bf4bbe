/**
 * The upstream client's discovery lifecycle on fake time: `start()` retries on the schedule the gateway relies on and
 * logs each failure with its wait, `ready()` resolves on the first success, `close()` stops the retries, and
 * `status()` says where discovery stands (what `/readyz` shows).
 */
import { Writable } from 'node:stream';
import { beforeEach, describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/core/errors.ts';
import { createLogger } from '../../src/observability/log.ts';
import { createUpstream, type UpstreamClient } from '../../src/upstream/oauth.ts';
import { FakeTime } from '../helpers/clock.ts';

const ISSUER = 'https://as.example';
const METADATA = {
  issuer: ISSUER,
  token_endpoint: `${ISSUER}/token`,
  device_authorization_endpoint: `${ISSUER}/device`,
};

let time: FakeTime;
let start: number;
/** Fake-time offsets (ms from the start) at which the OpenID configuration was asked for. */
let attempts: number[];
let up: boolean;
let logs: Array<Record<string, unknown>>;
let client: UpstreamClient;

beforeEach(() => {
  time = new FakeTime();
  start = time.now();
  attempts = [];
  up = false;
  logs = [];
  const fetch: typeof globalThis.fetch = async (input) => {
    const path = new URL(String(input)).pathname;
    if (path === '/.well-known/openid-configuration') attempts.push(time.now() - start);
    if (!up) throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED') });
    return path === '/.well-known/openid-configuration'
      ? Response.json(METADATA)
      : new Response('not found', { status: 404 });
  };
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  client = createUpstream({
    issuer: ISSUER,
    clientId: 'gw',
    mode: 'device',
    redirectUri: 'https://gw.example/oauth/callback',
    timeoutMs: 5000,
    allowInsecure: false,
    log: createLogger('info', destination),
    fetch,
    clock: time,
    timers: time,
  });
});

/** Whether `p` has settled by now (after the continuations queued so far ran). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await time.tick(0);
  return done;
}

describe('discovery lifecycle', () => {
  it('retries after 0.5, 1, 2, 5 and 10 s, then every 10 s, logging each failure with its wait', async () => {
    client.start();
    await time.tick(28_500 - 1);
    expect(attempts).toEqual([0, 500, 1500, 3500, 8500, 18_500]);
    await time.tick(1);
    expect(attempts).toEqual([0, 500, 1500, 3500, 8500, 18_500, 28_500]);
    const failures = logs.filter((l) => l.msg === 'upstream discovery failed');
    expect(failures.map((l) => l.retryInMs)).toEqual([500, 1000, 2000, 5000, 10_000, 10_000, 10_000]);
    expect(failures[0]).toMatchObject({
      level: 40,
      issuer: ISSUER,
      err: expect.stringContaining('ECONNREFUSED'),
    });
    expect(client.status()).toEqual({
      ready: false,
      detail: expect.stringContaining('openid-configuration'),
    });
  });

  it('ready() resolves on the first success, after which nothing is retried', async () => {
    const ready = client.ready();
    client.start();
    await time.tick(1500);
    expect(await settled(ready)).toBe(false);
    up = true;
    await time.tick(2000); // the attempt at 3.5 s succeeds
    expect(await settled(ready)).toBe(true);
    await ready;
    expect(attempts).toEqual([0, 500, 1500, 3500]);
    expect(client.status()).toEqual({ ready: true, detail: expect.stringContaining(`${ISSUER}/device`) });
    expect(logs.some((l) => l.msg === 'upstream discovered')).toBe(true);
    expect(time.pending).toBe(0);
    await time.tick(60_000);
    expect(attempts).toHaveLength(4);
  });

  it('succeeds at once when the upstream is up', async () => {
    up = true;
    client.start();
    await client.ready();
    expect(attempts).toEqual([0]);
    expect(logs.some((l) => l.msg === 'upstream discovery failed')).toBe(false);
  });

  it('close() cancels the pending retry, and a ready() still waiting rejects', async () => {
    const ready = client.ready();
    client.start();
    await time.tick(600);
    expect(attempts).toEqual([0, 500]);
    expect(time.pending).toBe(1);
    client.close();
    expect(time.pending).toBe(0);
    await expect(ready).rejects.toBeInstanceOf(UnavailableError);
    up = true;
    await time.tick(60_000);
    expect(attempts).toEqual([0, 500]);
    expect(client.status().ready).toBe(false);
  });

  it('methods that need the metadata say the upstream is unavailable until discovery succeeded', async () => {
    if (client.upstream.kind !== 'device') throw new Error('not a relay client');
    client.start();
    await time.tick(0);
    const err = await client.upstream.startDeviceAuthorization('openid').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err).toMatchObject({ message: expect.stringContaining('not discovered yet') });
    expect(await client.upstream.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable' });
    client.close();
  });
});

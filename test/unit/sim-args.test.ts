/**
 * The simulator's command line without a network: flag parsing, defaults, where the connection settings come from
 * (flags, DEVICEGATE_DEVICE_KEY, .devicegate/demo.json, defaults), usage errors, token redaction, percentiles.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_DEVICE_KEY } from '../../src/core/crypto.ts';
import {
  DEFAULT_DEVICE_INFO,
  DEFAULT_MQTT_URL,
  EXIT,
  type SimArgs,
  UsageError,
  parseSimArgs,
} from '../../firmware-sim/args.ts';
import { runCli } from '../../firmware-sim/cli.ts';
import { fingerprint, redact } from '../../firmware-sim/render.ts';
import { percentile, summarize } from '../../firmware-sim/fleet.ts';
import { parseReply, randomRid } from '../../firmware-sim/replies.ts';
import { ID_PATTERN } from '../../src/core/protocol.ts';

let empty: string;
let withDemo: string;
let badDemo: string;
let staleDemo: string;
/** a process that has exited: the pid a killed demo gateway leaves in its state file */
const DEAD_PID = spawnSync(process.execPath, ['-e', '']).pid;
let foreignKeyDemo: string;
const dirs: string[] = [];

async function tempDir(demo?: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dg-sim-args-'));
  dirs.push(dir);
  if (demo !== undefined) {
    await mkdir(path.join(dir, '.devicegate'));
    await writeFile(path.join(dir, '.devicegate', 'demo.json'), demo);
  }
  return dir;
}

/** A demo state file as this process's gateway would write it, with `changes` on top. */
function demoJson(changes: Record<string, unknown>): string {
  return JSON.stringify({
    mqttUrl: 'mqtt://127.0.0.1:18999',
    publicUrl: 'http://localhost:8080',
    topicPrefix: 'demo/v9',
    deviceAuth: 'hmac',
    deviceKey: DEMO_DEVICE_KEY,
    pid: process.pid,
    ...changes,
  });
}

beforeAll(async () => {
  empty = await tempDir();
  withDemo = await tempDir(demoJson({}));
  staleDemo = await tempDir(demoJson({ pid: DEAD_PID }));
  badDemo = await tempDir('{ not json');
  foreignKeyDemo = await tempDir(demoJson({ deviceKey: 'a-real-fleet-key' }));
});

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const parse = (argv: string[], opts: { env?: Record<string, string>; cwd?: string } = {}) =>
  parseSimArgs(argv, { env: opts.env ?? {}, cwd: opts.cwd ?? empty });

function asDevice(a: SimArgs) {
  if (a.kind !== 'device') throw new Error(`expected device args, got ${a.kind}`);
  return a;
}

function asFleet(a: SimArgs) {
  if (a.kind !== 'fleet') throw new Error(`expected fleet args, got ${a.kind}`);
  return a;
}

describe('parseSimArgs: one device', () => {
  it('needs only --id; everything else has a default', async () => {
    const a = asDevice(await parse(['--id', 'tv-1']));
    expect(a).toEqual({
      kind: 'device',
      conn: {
        url: DEFAULT_MQTT_URL,
        fleetKey: DEMO_DEVICE_KEY,
        topicPrefix: 'devicegate/v1',
        urlFrom: 'default',
        keyFrom: 'demo-default',
        demoFile: undefined,
      },
      deviceId: 'tv-1',
      rid: undefined,
      scope: undefined,
      device: { ...DEFAULT_DEVICE_INFO },
      encrypt: false,
      timeoutSeconds: undefined,
      answerTimeoutSeconds: 20,
      json: false,
    });
  });

  it('takes every flag', async () => {
    const a = asDevice(
      await parse([
        '--id=lamp.2',
        '--url',
        'mqtts://broker.example:8883',
        '--key',
        'k1',
        '--prefix',
        'acme/dg',
        '--scope',
        'openid offline_access',
        '--rid',
        'boot-7',
        '--name',
        'Kitchen lamp',
        '--model',
        'L-1',
        '--firmware',
        '0.9',
        '--encrypt',
        '--answer-timeout',
        '7',
        '--timeout',
        '2.5',
        '--json',
      ]),
    );
    expect(a.deviceId).toBe('lamp.2');
    expect(a.conn).toMatchObject({
      url: 'mqtts://broker.example:8883',
      fleetKey: 'k1',
      topicPrefix: 'acme/dg',
      urlFrom: 'flag',
      keyFrom: 'flag',
    });
    expect(a.scope).toBe('openid offline_access');
    expect(a.rid).toBe('boot-7');
    expect(a.device).toEqual({ name: 'Kitchen lamp', model: 'L-1', firmware: '0.9' });
    expect(a.encrypt).toBe(true);
    expect(a.timeoutSeconds).toBe(2.5);
    expect(a.answerTimeoutSeconds).toBe(7);
    expect(a.json).toBe(true);
  });

  it('takes the fleet key from DEVICEGATE_DEVICE_KEY, and --key over it', async () => {
    const fromEnv = asDevice(await parse(['--id', 'tv-1'], { env: { DEVICEGATE_DEVICE_KEY: 'env-key' } }));
    expect(fromEnv.conn).toMatchObject({ fleetKey: 'env-key', keyFrom: 'env' });
    const fromFlag = asDevice(
      await parse(['--id', 'tv-1', '--key', 'flag-key'], { env: { DEVICEGATE_DEVICE_KEY: 'env-key' } }),
    );
    expect(fromFlag.conn).toMatchObject({ fleetKey: 'flag-key', keyFrom: 'flag' });
  });

  it('reads .devicegate/demo.json in the directory it runs in', async () => {
    const a = asDevice(await parse(['--id', 'tv-1'], { cwd: withDemo }));
    expect(a.conn).toEqual({
      url: 'mqtt://127.0.0.1:18999',
      fleetKey: DEMO_DEVICE_KEY,
      topicPrefix: 'demo/v9',
      urlFrom: 'demo-file',
      keyFrom: 'demo-file',
      demoFile: path.join(withDemo, '.devicegate', 'demo.json'),
    });
  });

  it('ignores a demo file whose gateway is gone, and says so (the defaults apply)', async () => {
    const a = asDevice(await parse(['--id', 'tv-1'], { cwd: staleDemo }));
    expect(a.conn).toMatchObject({
      url: 'mqtt://localhost:1883',
      urlFrom: 'default',
      keyFrom: 'demo-default',
      demoFile: undefined,
      staleDemoFile: { file: path.join(staleDemo, '.devicegate', 'demo.json'), pid: DEAD_PID },
    });
  });

  it('lets flags and the environment win over the demo file', async () => {
    const a = asDevice(
      await parse(['--id', 'tv-1', '--url', 'mqtt://10.0.0.5:1883', '--prefix', 'p/q'], {
        cwd: withDemo,
        env: { DEVICEGATE_DEVICE_KEY: 'env-key' },
      }),
    );
    expect(a.conn).toMatchObject({
      url: 'mqtt://10.0.0.5:1883',
      fleetKey: 'env-key',
      topicPrefix: 'p/q',
      urlFrom: 'flag',
      keyFrom: 'env',
    });
  });

  it('does not read the demo file when --url, --key and --prefix are all given', async () => {
    const a = asDevice(
      await parse(['--id', 'tv-1', '--url', 'mqtt://h:1', '--key', 'k', '--prefix', 'x'], { cwd: badDemo }),
    );
    expect(a.conn.demoFile).toBeUndefined();
  });

  it('reports a demo file that is not JSON as a usage error', async () => {
    await expect(parse(['--id', 'tv-1'], { cwd: badDemo })).rejects.toThrow(/demo\.json is not JSON/);
  });

  it('refuses a demo file that carries any key but the published demo key', async () => {
    const err = await parse(['--id', 'tv-1'], { cwd: foreignKeyDemo }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(/demo\.json is not a demo state file \("deviceKey"/);
  });

  it('returns help for --help and -h', async () => {
    expect(await parse(['--help'])).toEqual({ kind: 'help' });
    expect(await parse(['-h', '--id', 'x'])).toEqual({ kind: 'help' });
  });
});

describe('parseSimArgs: fleet', () => {
  it('has defaults for a load run', async () => {
    const a = asFleet(await parse(['--fleet', '200']));
    expect(a).toMatchObject({
      devices: 200,
      durationSeconds: 10,
      warmupSeconds: 1,
      concurrency: 50,
      requestsPerDevice: undefined,
      idPrefix: undefined,
      cancel: true,
      json: false,
    });
  });

  it('takes the fleet flags', async () => {
    const a = asFleet(
      await parse([
        '--fleet',
        '20',
        '--duration',
        '3',
        '--warmup',
        '0',
        '--concurrency',
        '5',
        '--requests',
        '7',
        '--id-prefix',
        'load-',
        '--no-cancel',
        '--json',
      ]),
    );
    expect(a).toMatchObject({
      devices: 20,
      durationSeconds: 3,
      warmupSeconds: 0,
      concurrency: 5,
      requestsPerDevice: 7,
      idPrefix: 'load-',
      cancel: false,
      json: true,
    });
  });
});

describe('parseSimArgs: bad flags are usage errors', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['unknown flag', ['--id', 'tv-1', '--bogus'], /Unknown option '--bogus'/],
    ['missing value', ['--id'], /argument missing/],
    ['positional argument', ['--id', 'tv-1', 'extra'], /Unexpected argument 'extra'/],
    ['no --id', [], /--id <deviceId> is required/],
    ['id with a slash', ['--id', 'tv/1'], /--id "tv\/1" must be/],
    ['id with a wildcard', ['--id', '#'], /--id "#" must be/],
    ['id longer than 64', ['--id', 'a'.repeat(65)], /must be 1 to 64/],
    ['bad rid', ['--id', 'tv-1', '--rid', 'a b'], /--rid "a b" must be/],
    ['non-number timeout', ['--id', 'tv-1', '--timeout', 'soon'], /--timeout must be a number > 0/],
    ['zero timeout', ['--id', 'tv-1', '--timeout', '0'], /--timeout must be a number > 0/],
    ['url scheme', ['--id', 'tv-1', '--url', 'http://localhost:8080'], /--url must be mqtt:\/\//],
    ['not a url', ['--id', 'tv-1', '--url', 'localhost'], /is not a URL/],
    ['empty key', ['--id', 'tv-1', '--key', ''], /--key must not be empty/],
    ['wildcard prefix', ['--id', 'tv-1', '--prefix', 'a/#'], /is not a topic prefix/],
    ['scope with a quote', ['--id', 'tv-1', '--scope', 'a"b'], /--scope must be/],
    ['control character in name', ['--id', 'tv-1', '--name', 'a\u0007b'], /--name must be/],
    ['device flags with --fleet', ['--fleet', '3', '--id', 'tv-1'], /--id cannot be used with --fleet/],
    ['fleet flags without --fleet', ['--id', 'tv-1', '--duration', '3'], /--duration only work with --fleet/],
    ['fractional fleet size', ['--fleet', '2.5'], /--fleet must be an integer > 0/],
    ['negative warmup', ['--fleet', '2', '--warmup=-1'], /--warmup must be a number >= 0/],
    ['bad id prefix', ['--fleet', '2', '--id-prefix', 'a/b'], /--id-prefix must be/],
    ['--cert without its key', ['--id', 'tv-1', '--cert', 'x.crt'], /--cert and --cert-key come together/],
    [
      'an unreadable --ca',
      ['--id', 'tv-1', '--ca', '/nonexistent/ca.crt'],
      /--ca \/nonexistent\/ca.crt: cannot read/,
    ],
    [
      '--tls with a plain --url',
      ['--id', 'tv-1', '--tls', '--url', 'mqtt://h:1883'],
      /need an mqtts:\/\/ or wss:\/\/ --url/,
    ],
    [
      '--ws with an mqtt --url',
      ['--id', 'tv-1', '--ws', '--url', 'mqtt://h:1883'],
      /--ws and --url mqtt:\/\/ do not agree/,
    ],
    ['--cert for a fleet', ['--fleet', '2', '--cert', 'x.crt'], /--cert cannot be used with --fleet/],
  ];
  it.each(cases)('%s', async (_name, argv, message) => {
    const err = await parse(argv).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(message);
  });
});

describe('parseSimArgs: TLS and WebSocket', () => {
  let pems: string;
  beforeAll(async () => {
    pems = await tempDir();
    for (const f of ['ca.crt', 'tv-1.crt', 'tv-1.key']) await writeFile(path.join(pems, f), `PEM of ${f}`);
  });
  const file = (f: string) => path.join(pems, f);

  it('--tls switches the default or demo broker to mqtts on 8883, --ws to the HTTP port /mqtt, both to wss', async () => {
    expect(asDevice(await parse(['--id', 'tv-1', '--tls'])).conn.url).toBe('mqtts://localhost:8883');
    expect(asDevice(await parse(['--id', 'tv-1', '--tls'], { cwd: withDemo })).conn.url).toBe(
      'mqtts://127.0.0.1:8883',
    );
    expect(asDevice(await parse(['--id', 'tv-1', '--ws'])).conn.url).toBe('ws://localhost:8080/mqtt');
    expect(asDevice(await parse(['--id', 'tv-1', '--ws', '--tls'], { cwd: withDemo })).conn).toMatchObject({
      url: 'wss://localhost:8080/mqtt',
      urlFrom: 'demo-file',
    });
    expect(asFleet(await parse(['--fleet', '2', '--ws'])).conn.url).toBe('ws://localhost:8080/mqtt');
  });

  it('reads --ca, --cert and --cert-key (which imply TLS); --key stays the fleet key', async () => {
    const a = asDevice(
      await parse([
        '--id',
        'tv-1',
        '--ca',
        file('ca.crt'),
        '--cert',
        file('tv-1.crt'),
        '--cert-key',
        file('tv-1.key'),
        '--key',
        'fleet',
      ]),
    );
    expect(a.conn.url).toBe('mqtts://localhost:8883');
    expect(a.conn.fleetKey).toBe('fleet');
    expect(a.conn.tls).toEqual({
      ca: Buffer.from('PEM of ca.crt'),
      cert: Buffer.from('PEM of tv-1.crt'),
      key: Buffer.from('PEM of tv-1.key'),
    });
    const fleet = asFleet(await parse(['--fleet', '2', '--ca', file('ca.crt'), '--url', 'mqtts://gw:8883']));
    expect(fleet.conn).toMatchObject({ url: 'mqtts://gw:8883', tls: { ca: Buffer.from('PEM of ca.crt') } });
    expect(asDevice(await parse(['--id', 'tv-1'])).conn.tls).toBeUndefined();
  });
});

describe('runCli without a network', () => {
  function capture() {
    const out: string[] = [];
    const err: string[] = [];
    return {
      out,
      err,
      io: {
        stdout: { write: (s: string) => out.push(s) },
        stderr: { write: (s: string) => err.push(s) },
        env: {},
        cwd: empty,
      },
    };
  }

  it('exits 2 with the message and a hint for bad flags, printing nothing on stdout', async () => {
    const c = capture();
    expect(await runCli(['--id', 'tv-1', '--nope'], c.io)).toBe(EXIT.usage);
    expect(c.out.join('')).toBe('');
    expect(c.err.join('')).toMatch(/Unknown option '--nope'[\s\S]*--help/);
  });

  it('prints the usage for --help and exits 0', async () => {
    const c = capture();
    expect(await runCli(['--help'], c.io)).toBe(EXIT.ok);
    expect(c.out.join('')).toMatch(/--id <deviceId>[\s\S]*--fleet <n>[\s\S]*Exit codes/);
  });
});

describe('token redaction', () => {
  const token = `eyJ${'x'.repeat(200)}TAIL`;

  it('shows at most 6 characters and the length', () => {
    const f = fingerprint(token);
    expect(f).toBe(`eyJxxx… (${token.length} chars)`);
    expect(fingerprint('abcdef')).toBe('ab… (6 chars)');
  });

  it('replaces every token field of a reply', () => {
    const r = redact({
      v: 1,
      rid: 'r1',
      status: 'authorized',
      access_token: token,
      id_token: `${token}-id`,
      token_type: 'Bearer',
      expires_in: 3600,
    });
    const text = JSON.stringify(r);
    expect(text).not.toContain('TAIL');
    expect(r['token_type']).toBe('Bearer');
    expect(r['access_token']).toBe(fingerprint(token));
  });
});

describe('replies and rids', () => {
  it('parses the three reply kinds and refuses anything else', () => {
    const enc = (v: unknown) => Buffer.from(JSON.stringify(v));
    expect(
      parseReply(
        enc({ v: 1, rid: 'a', status: 'pending', user_code: 'X', verification_uri: 'u', expires_in: 1 }),
      ),
    ).toMatchObject({ status: 'pending' });
    expect(parseReply(enc({ v: 1, rid: 'a', status: 'authorized', jwe: 'x.y.z' }))).toMatchObject({
      status: 'authorized',
    });
    expect(parseReply(enc({ v: 1, status: 'error', error: 'invalid_request' }))).toMatchObject({
      status: 'error',
    });
    expect(parseReply(enc({ v: 1, rid: 'a', status: 'pending' }))).toBeUndefined();
    expect(parseReply(enc({ v: 1, rid: 7, status: 'error', error: 'x' }))).toBeUndefined();
    expect(parseReply(enc([1, 2]))).toBeUndefined();
    expect(parseReply(Buffer.from('not json'))).toBeUndefined();
  });

  it('makes rids the contract accepts, different each time', () => {
    const a = randomRid();
    expect(a).toMatch(ID_PATTERN);
    expect(randomRid()).not.toBe(a);
  });
});

describe('percentile', () => {
  const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted on purpose

  it('uses the nearest rank', () => {
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 90)).toBe(90);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile(values, 0)).toBe(1);
    expect(percentile([3, 1, 2], 50)).toBe(2);
    expect(percentile([5], 99)).toBe(5);
  });

  it('does not reorder its input', () => {
    const copy = [...values];
    percentile(values, 50);
    expect(values).toEqual(copy);
  });

  it('is NaN for no values and refuses p outside 0..100', () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], Number.NaN)).toThrow(RangeError);
  });

  it('summarizes p50, p90, p99 and max', () => {
    expect(summarize(values)).toEqual({ p50: 50, p90: 90, p99: 99, max: 100 });
  });
});

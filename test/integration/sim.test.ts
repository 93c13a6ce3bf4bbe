/**
 * The firmware simulator against a REAL aedes broker with a small in-test responder that answers like the gateway
 * (docs/architecture.md): pending, then authorized (or denied) when the test says so. The gateway itself is not involved.
 * Covers SimDevice (happy path, refused credentials, resume after a dropped socket with and without a persistent
 * session, JWE), fleet mode, and the CLI both in-process and as a child process (exit codes, no full token printed).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, type Server, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { CompactEncrypt, type JWK, importJWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_DEVICE_KEY, checkDevicePassword } from '../../src/core/crypto.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';
import { topics } from '../../src/transport/topics.ts';
import { EXIT } from '../../firmware-sim/args.ts';
import { runCli } from '../../firmware-sim/cli.ts';
import { SimError } from '../../firmware-sim/connection.ts';
import { type ConnectionEvent, SimDevice } from '../../firmware-sim/device.ts';
import { connectFleet, runRoundTrips } from '../../firmware-sim/fleet.ts';
import { writeDemoState } from '../../src/demo/state.ts';
import { waitFor } from '../helpers/procs.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const KEY = `fleet-key-${randomBytes(8).toString('hex')}`;
const T = topics('devicegate/v1');
const CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

interface TestFlow {
  state: 'pending' | 'authorized' | 'denied';
  userCode: string;
  token: string;
  jwk: JWK | undefined;
}

interface Seen {
  deviceId: string;
  action: string;
  body: Record<string, unknown>;
}

/** An aedes broker checking the HMAC credential, plus a responder on `devicegate/v1/+/req/+`. */
class Responder {
  readonly broker: Aedes;
  readonly server: Server;
  readonly requests: Seen[] = [];
  /** every payload published on a `res` topic, as sent */
  readonly published: string[] = [];
  readonly flows = new Map<string, TestFlow>();
  /** answer `authorize` with authorized right after pending */
  autoApprove = false;
  /** answer `authorize` with this error instead of pending */
  refuseWith: 'slow_down' | 'access_denied' | undefined;
  /** while set, CONNECTs wait for it (holds a device offline) */
  gate: Promise<void> | undefined;
  readonly disconnects: string[] = [];
  readonly clients = new Map<string, Client>();

  private constructor(broker: Aedes, server: Server) {
    this.broker = broker;
    this.server = server;
  }

  static async start(): Promise<Responder> {
    const broker = await Aedes.createBroker();
    const server = createServer({ noDelay: true }, broker.handle);
    const r = new Responder(broker, server);
    broker.authenticate = (client, username, password, done) => {
      const ok =
        username === client.id &&
        username !== undefined &&
        // devices named demo-* belong to the demo fleet, whose key the demo state file carries
        checkDevicePassword(username.startsWith('demo-') ? DEMO_DEVICE_KEY : KEY, username, password);
      const answer = () => {
        if (ok) return done(null, true);
        const err = new Error('bad username or password') as AuthenticateError;
        err.returnCode = 4;
        done(err, null);
      };
      if (r.gate === undefined) answer();
      else void r.gate.then(answer);
    };
    broker.on('client', (client) => r.clients.set(client.id, client));
    broker.on('clientDisconnect', (client) => r.disconnects.push(client.id));
    broker.on('publish', (packet) => {
      if (packet.topic.endsWith('/res')) r.published.push(packet.payload.toString());
    });
    await new Promise<void>((resolve) =>
      broker.subscribe(T.requestFilter, (p, cb) => r.onRequest(p, cb), resolve),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return r;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private onRequest(packet: { topic: string; payload: Buffer | string }, cb: () => void): void {
    cb();
    const parsed = T.parseRequest(packet.topic);
    if (parsed === undefined) return;
    const body = JSON.parse(packet.payload.toString()) as Record<string, unknown>;
    this.requests.push({ deviceId: parsed.deviceId, action: parsed.rawAction, body });
    void this.handle(parsed.deviceId, parsed.rawAction, body);
  }

  private async handle(deviceId: string, action: string, body: Record<string, unknown>): Promise<void> {
    const rid = String(body['rid']);
    const key = `${deviceId}/${rid}`;
    const flow = this.flows.get(key);
    switch (action) {
      case 'authorize': {
        if (this.refuseWith !== undefined) {
          await this.send(deviceId, this.error(rid, this.refuseWith));
          return;
        }
        if (flow === undefined) {
          const userCode = Array.from({ length: 8 }, () => CODE_ALPHABET[randomBytes(1)[0]! % 20]).join('');
          this.flows.set(key, {
            state: 'pending',
            userCode: `${userCode.slice(0, 4)}-${userCode.slice(4)}`,
            token: `canary-${randomBytes(48).toString('base64url')}`,
            jwk: body['jwk'] as JWK | undefined,
          });
        }
        await this.send(deviceId, await this.view(deviceId, rid));
        if (this.autoApprove) await this.approve(deviceId, rid);
        return;
      }
      case 'status':
        await this.send(deviceId, await this.view(deviceId, rid));
        return;
      case 'ack':
        this.flows.delete(key);
        return;
      case 'cancel':
        if (flow?.state === 'pending') flow.state = 'denied';
        await this.send(deviceId, await this.view(deviceId, rid));
        return;
    }
  }

  private error(rid: string, error: 'slow_down' | 'access_denied' | 'expired_token'): DeviceReply {
    const text = {
      slow_down: 'too many requests',
      access_denied: 'the user said no',
      expired_token: 'unknown',
    };
    return { v: 1, rid, status: 'error', error, error_description: text[error] };
  }

  /** The flow's reply, as the gateway renders it (JWE when the device sent a key). */
  private async view(deviceId: string, rid: string): Promise<DeviceReply> {
    const flow = this.flows.get(`${deviceId}/${rid}`);
    if (flow === undefined) return this.error(rid, 'expired_token');
    switch (flow.state) {
      case 'pending':
        return {
          v: 1,
          rid,
          status: 'pending',
          user_code: flow.userCode,
          verification_uri: 'http://gw.test/device',
          verification_uri_complete: `http://gw.test/device?user_code=${flow.userCode}`,
          expires_in: 600,
        };
      case 'denied':
        return this.error(rid, 'access_denied');
      case 'authorized': {
        const fields = { access_token: flow.token, token_type: 'Bearer', expires_in: 3600, scope: 'openid' };
        if (flow.jwk === undefined) return { v: 1, rid, status: 'authorized', ...fields };
        const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(fields)))
          .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM', cty: 'json' })
          .encrypt(await importJWK(flow.jwk, 'ECDH-ES'));
        return { v: 1, rid, status: 'authorized', jwe };
      }
    }
  }

  private send(deviceId: string, reply: DeviceReply): Promise<void> {
    return new Promise((resolve, reject) =>
      this.broker.publish(
        {
          cmd: 'publish',
          topic: T.response(deviceId),
          payload: Buffer.from(JSON.stringify(reply)),
          qos: 1,
          retain: false,
          dup: false,
        },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  }

  /** The person approved: the flow is authorized and the result is pushed (queued if the device is away). */
  async approve(deviceId: string, rid: string): Promise<void> {
    const flow = this.flows.get(`${deviceId}/${rid}`);
    if (flow === undefined) throw new Error(`no flow ${deviceId}/${rid}`);
    flow.state = 'authorized';
    await this.send(deviceId, await this.view(deviceId, rid));
  }

  /** Drops a device's connection from the broker side. */
  kick(deviceId: string): void {
    const client = this.clients.get(deviceId);
    if (client === undefined) throw new Error(`${deviceId} never connected`);
    client.conn.destroy();
  }

  seen(deviceId: string, action: string, rid?: string): Seen[] {
    return this.requests.filter(
      (s) => s.deviceId === deviceId && s.action === action && (rid === undefined || s.body['rid'] === rid),
    );
  }

  token(deviceId: string, rid: string): string {
    const flow = this.flows.get(`${deviceId}/${rid}`);
    if (flow === undefined) throw new Error(`no flow ${deviceId}/${rid}`);
    return flow.token;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

let responder: Responder;
const devices: SimDevice[] = [];
const children: ChildProcess[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  responder = await Responder.start();
});

afterEach(async () => {
  responder.autoApprove = false;
  responder.refuseWith = undefined;
  responder.gate = undefined;
  await Promise.allSettled(devices.splice(0).map((d) => d.close()));
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

afterAll(async () => {
  await responder.close();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

function device(
  deviceId: string,
  extra: Partial<ConstructorParameters<typeof SimDevice>[0]> = {},
): SimDevice {
  const d = new SimDevice({ url: responder.url, deviceId, fleetKey: KEY, reconnectPeriod: 100, ...extra });
  devices.push(d);
  return d;
}

describe('SimDevice', () => {
  it('connects with its HMAC credential, gets pending, then authorized, and acks', async () => {
    const d = device('tv-1');
    await d.connect();
    const rid = await d.authorize({
      device: { name: 'Living-room TV', model: 'DG-TV 5000', firmware: '1.4.2' },
    });

    const pending = await d.waitFor(rid, 'pending', 5000);
    if (pending.status !== 'pending') throw new Error('unreachable');
    expect(pending.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect(pending.verification_uri).toBe('http://gw.test/device');
    expect(responder.seen('tv-1', 'authorize', rid)[0]?.body).toEqual({
      rid,
      device: { name: 'Living-room TV', model: 'DG-TV 5000', firmware: '1.4.2' },
    });

    await responder.approve('tv-1', rid);
    const done = await d.waitFor(rid, 'authorized', 5000);
    if (done.status !== 'authorized') throw new Error('unreachable');
    expect(done.access_token).toBe(responder.token('tv-1', rid));
    expect(done.encrypted).toBeUndefined();

    await d.ack(rid);
    await waitFor(() => responder.seen('tv-1', 'ack', rid).length === 1, 5000, 'the ack');
  });

  it('ignores replies for other rids in waitFor but still emits them', async () => {
    const d = device('tv-2');
    const all: string[] = [];
    d.onReply((r) => all.push(`${r.rid}:${r.status}`));
    await d.connect();
    const first = await d.authorize();
    const second = await d.authorize();
    await d.waitFor(second, 'pending', 5000);
    await responder.approve('tv-2', first);
    await expect(d.waitFor(second, 'authorized', 300)).rejects.toMatchObject({ code: 'reply_timeout' });
    await waitFor(() => all.includes(`${first}:authorized`), 5000, 'the other reply to be emitted');
  });

  it('rejects connect() with refused_credentials when the fleet key is wrong', async () => {
    const d = device('tv-3', { fleetKey: 'not-the-key' });
    const err = await d.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SimError);
    expect(err).toMatchObject({ code: 'refused_credentials', returnCode: 4 });
  });

  it.each([
    ['a persistent session (the queued result)', false],
    ['a clean session (only req/status brings the result)', true],
  ])('resumes after its socket drops while pending, with %s', async (_name, clean) => {
    const id = clean ? 'tv-clean' : 'tv-persistent';
    const d = device(id, { clean });
    const events: ConnectionEvent[] = [];
    d.onConnection((e) => events.push(e));
    await d.connect();
    const rid = await d.authorize();
    await d.waitFor(rid, 'pending', 5000);

    // Hold the device offline: its reconnect waits at the broker's authenticate until the gate opens.
    let open!: () => void;
    responder.gate = new Promise((resolve) => (open = resolve));
    const before = responder.disconnects.filter((c) => c === id).length;
    d.client.stream.destroy();
    await waitFor(
      () => responder.disconnects.filter((c) => c === id).length > before,
      5000,
      'the broker to see it go',
    );
    expect(d.connected).toBe(false);

    await responder.approve(id, rid); // published while the device is away
    expect(d.replies(rid).some((r) => r.status === 'authorized')).toBe(false);
    open();

    const done = await d.waitFor(rid, 'authorized', 5000);
    if (done.status !== 'authorized') throw new Error('unreachable');
    expect(done.access_token).toBe(responder.token(id, rid));
    await waitFor(() => responder.seen(id, 'status', rid).length > 0, 5000, 'req/status after the reconnect');
    expect(events).toEqual(['lost', 'reconnected']);
  });

  it('sends a public key and decrypts the JWE the token arrives in', async () => {
    const d = device('tv-jwe', { encrypt: true });
    await d.connect();
    const rid = await d.authorize();
    await d.waitFor(rid, 'pending', 5000);

    const jwk = responder.seen('tv-jwe', 'authorize', rid)[0]?.body['jwk'] as Record<string, unknown>;
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256' });
    expect(jwk).not.toHaveProperty('d');

    await responder.approve('tv-jwe', rid);
    const done = await d.waitFor(rid, 'authorized', 5000);
    if (done.status !== 'authorized') throw new Error('unreachable');
    const token = responder.token('tv-jwe', rid);
    expect(done).toMatchObject({ access_token: token, token_type: 'Bearer', encrypted: true });
    expect(done).not.toHaveProperty('jwe');
    // on the wire only ciphertext: the broker never carried the token in clear
    expect(responder.published.some((p) => p.includes(token))).toBe(false);
    expect(responder.published.some((p) => p.includes(`"rid":"${rid}"`) && p.includes('"jwe"'))).toBe(true);
  });
});

describe('fleet', () => {
  it('runs 20 devices x 3 closed-loop round trips with no errors', async () => {
    const fleet = await connectFleet({
      url: responder.url,
      fleetKey: KEY,
      devices: 20,
      idPrefix: 'fl-',
      connectConcurrency: 5,
    });
    try {
      expect(fleet.clients.map((c) => c.id)).toEqual(Array.from({ length: 20 }, (_, i) => `fl-${i}`));
      expect(fleet.connectLatencies).toHaveLength(20);
      expect(fleet.connectRate).toBeGreaterThan(0);

      const r = await runRoundTrips(fleet, { requestsPerDevice: 3 });
      expect(r).toMatchObject({ completed: 60, errors: 0, failed: 0 });
      expect(Object.fromEntries(r.replies)).toEqual({ pending: 60 });
      expect(r.perSecond).toBeGreaterThan(0);
      expect(r.latencyMs.p50).toBeGreaterThan(0);
      expect(r.latencyMs.p50).toBeLessThanOrEqual(r.latencyMs.p90);
      expect(r.latencyMs.p90).toBeLessThanOrEqual(r.latencyMs.p99);
      expect(r.latencyMs.p99).toBeLessThanOrEqual(r.latencyMs.max);

      const authorizes = responder.requests.filter(
        (s) => s.deviceId.startsWith('fl-') && s.action === 'authorize',
      );
      expect(authorizes).toHaveLength(60);
      expect(new Set(authorizes.map((s) => `${s.deviceId}/${String(s.body['rid'])}`)).size).toBe(60);
      // each pending flow is cancelled so a gateway's live-flow cap is never reached
      await waitFor(
        () =>
          responder.requests.filter((s) => s.deviceId.startsWith('fl-') && s.action === 'cancel').length ===
          60,
        5000,
        'the cancels',
      );
    } finally {
      await fleet.close();
    }
  });

  it('counts error replies as errors, by code', async () => {
    responder.refuseWith = 'slow_down';
    const fleet = await connectFleet({ url: responder.url, fleetKey: KEY, devices: 2, idPrefix: 'fe-' });
    try {
      const r = await runRoundTrips(fleet, { requestsPerDevice: 2 });
      expect(r).toMatchObject({ completed: 4, errors: 4, failed: 0 });
      expect(Object.fromEntries(r.errorCodes)).toEqual({ slow_down: 4 });
    } finally {
      await fleet.close();
    }
  });

  it('refuses to start a fleet whose key is wrong, closing what it opened', async () => {
    const err = await connectFleet({
      url: responder.url,
      fleetKey: 'wrong',
      devices: 3,
      idPrefix: 'fw-',
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'refused_credentials' });
  });
});

describe('CLI', () => {
  function capture(cwd: string, signal?: AbortSignal) {
    const out: string[] = [];
    const err: string[] = [];
    return {
      out,
      err,
      io: {
        stdout: { write: (s: string) => out.push(s) },
        stderr: { write: (s: string) => err.push(s) },
        env: {},
        cwd,
        ...(signal !== undefined && { signal }),
      },
    };
  }

  function spawnSim(args: string[]): {
    child: ChildProcess;
    stdout: () => string;
    exit: Promise<number | null>;
  } {
    const child = spawn(process.execPath, ['--import', 'tsx', 'firmware-sim/main.ts', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    children.push(child);
    let out = '';
    child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, stdout: () => out, exit };
  }

  it('as a child process: prints the code and "Authorized", acks, exits 0, never prints the whole token', async () => {
    responder.autoApprove = true;
    const sim = spawnSim([
      '--id',
      'tv-cli',
      '--url',
      responder.url,
      '--key',
      KEY,
      '--prefix',
      'devicegate/v1',
      '--rid',
      'cli-1',
    ]);
    expect(await sim.exit).toBe(EXIT.ok);
    const out = sim.stdout();
    await waitFor(() => responder.seen('tv-cli', 'ack', 'cli-1').length === 1, 5000, 'the ack');
    const sent = responder.published.find((p) => p.includes('"rid":"cli-1"') && p.includes('access_token'));
    const accessToken = (JSON.parse(sent!) as { access_token: string }).access_token;
    const pending = responder.published.find((p) => p.includes('"rid":"cli-1"') && p.includes('user_code'));
    const userCode = (JSON.parse(pending!) as { user_code: string }).user_code;

    expect(out).toContain(userCode);
    expect(out).toContain('http://gw.test/device');
    expect(out).toContain('Authorized ✓');
    expect(out).toContain(`${accessToken.slice(0, 6)}… (${accessToken.length} chars)`);
    expect(out).not.toContain(accessToken);
    expect(out).not.toContain(accessToken.slice(6, 30));
  });

  it('as a child process: Ctrl-C while pending sends req/cancel and exits 130', async () => {
    const sim = spawnSim([
      '--id',
      'tv-int',
      '--url',
      responder.url,
      '--key',
      KEY,
      '--prefix',
      'devicegate/v1',
      '--rid',
      'int-1',
    ]);
    await waitFor(
      () => sim.stdout().includes('Waiting for approval'),
      15_000,
      'the simulator to show its code',
    );
    sim.child.kill('SIGINT');
    expect(await sim.exit).toBe(EXIT.interrupted);
    expect(responder.seen('tv-int', 'cancel', 'int-1')).toHaveLength(1);
  });

  it('in-process: reads .devicegate/demo.json, prints one redacted JSON line per reply with --json', async () => {
    responder.autoApprove = true;
    const dir = await mkdtemp(path.join(tmpdir(), 'dg-sim-demo-'));
    dirs.push(dir);
    await writeDemoState(
      {
        mqttUrl: responder.url,
        publicUrl: 'http://localhost:8080',
        topicPrefix: 'devicegate/v1',
        deviceAuth: 'hmac',
        pid: process.pid,
        deviceKey: DEMO_DEVICE_KEY,
      },
      dir,
    );
    const c = capture(dir);
    expect(await runCli(['--id', 'demo-tv-json', '--json', '--rid', 'json-1'], c.io)).toBe(EXIT.ok);
    const lines = c.out
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l['status'])).toEqual(['pending', 'authorized']);
    const token = responder.published
      .map((p) => JSON.parse(p) as Record<string, unknown>)
      .find((p) => p['rid'] === 'json-1' && p['status'] === 'authorized')?.['access_token'] as string;
    expect(lines[1]?.['access_token']).toBe(`${token.slice(0, 6)}… (${token.length} chars)`);
    expect(c.out.join('')).not.toContain(token);
    expect(c.err.join('')).toContain('Authorized ✓');
    await waitFor(() => responder.seen('demo-tv-json', 'ack', 'json-1').length === 1, 5000, 'the ack');
  });

  it('in-process: says the connection was lost, resumes with req/status, and still ends authorized', async () => {
    const c = capture(ROOT);
    const run = runCli(
      [
        '--id',
        'tv-drop',
        '--url',
        responder.url,
        '--key',
        KEY,
        '--prefix',
        'devicegate/v1',
        '--rid',
        'drop-1',
      ],
      c.io,
    );
    await waitFor(() => c.out.join('').includes('Waiting for approval'), 5000, 'the code');
    let open!: () => void;
    responder.gate = new Promise((resolve) => (open = resolve));
    responder.kick('tv-drop');
    await waitFor(() => c.out.join('').includes('connection lost, reconnecting…'), 5000, 'the lost message');
    await responder.approve('tv-drop', 'drop-1');
    open();
    expect(await run).toBe(EXIT.ok);
    const out = c.out.join('');
    expect(out).toMatch(/connection lost, reconnecting…\nreconnected[^\n]*\n[\s\S]*Authorized ✓/);
    expect(out.match(/Authorized ✓/g)).toHaveLength(1);
    expect(responder.seen('tv-drop', 'status', 'drop-1').length).toBeGreaterThan(0);
    await waitFor(() => responder.seen('tv-drop', 'ack', 'drop-1').length === 1, 5000, 'the ack');
  });

  it('in-process: a denied request prints the error and exits 1', async () => {
    responder.refuseWith = 'access_denied';
    const c = capture(ROOT);
    const code = await runCli(
      ['--id', 'tv-deny', '--url', responder.url, '--key', KEY, '--prefix', 'devicegate/v1'],
      c.io,
    );
    expect(code).toBe(EXIT.failed);
    expect(c.out.join('')).toMatch(/Authorization failed: access_denied\n\s+the user said no/);
  });

  it('in-process: with nothing answering on that broker, gives up after --answer-timeout and says why, exit 1', async () => {
    const c = capture(ROOT);
    // the responder serves devicegate/v1 only: on this prefix no gateway will ever answer
    const code = await runCli(
      [
        '--id',
        'tv-alone',
        '--url',
        responder.url,
        '--key',
        KEY,
        '--prefix',
        'nobody/v1',
        '--answer-timeout',
        '0.5',
      ],
      c.io,
    );
    expect(code).toBe(EXIT.failed);
    expect(c.out.join('')).toContain(`No answer from a gateway within 0.5 s on ${responder.url}.`);
    expect(c.out.join('')).toMatch(/Is the gateway running \(npm start\)/);
  });

  it('in-process: a wrong key is reported as refused credentials, exit 1', async () => {
    const c = capture(ROOT);
    const code = await runCli(
      ['--id', 'tv-bad', '--url', responder.url, '--key', 'nope', '--prefix', 'devicegate/v1'],
      c.io,
    );
    expect(code).toBe(EXIT.failed);
    expect(c.out.join('')).toMatch(/Could not connect: .*bad username or password[\s\S]*given with --key/);
  });
});

/**
 * The `npm run sim` command line: flag parsing (node:util parseArgs), where the connection settings come from
 * (flags, environment, `.devicegate/demo.json`, defaults), the interactive device and the fleet mode.
 * `firmware-sim/main.ts` only wires the process (argv, stdout, Ctrl-C, exit code) to {@link runCli}.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import qrcode from 'qrcode-terminal';
import { DEMO_DEVICE_KEY } from '../src/core/crypto.ts';
import { ID_PATTERN } from '../src/core/protocol.ts';
import { DEFAULT_TOPIC_PREFIX, SimDevice, SimError, type SimReply, randomRid } from './device.ts';
import { connectFleet, runRoundTrips, summarize } from './fleet.ts';

export const DEFAULT_MQTT_URL = 'mqtt://localhost:1883';
export const DEFAULT_DEVICE_INFO = {
  name: 'Living-room TV',
  model: 'DG-TV 5000',
  firmware: '1.4.2',
} as const;
/** Where the gateway writes its demo settings, relative to the directory the simulator runs in. */
export const DEMO_FILE = path.join('.devicegate', 'demo.json');

/** Exit codes: 0 authorized / fleet run without errors, 1 failed, 2 bad flags, 130 interrupted (Ctrl-C). */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/** Bad flags or settings: the CLI prints the message and the usage hint and exits 2. */
export class UsageError extends Error {
  readonly code = 'usage' as const;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** What the gateway writes to `.devicegate/demo.json` in demo mode (see `writeDemoFile` in src/gateway.ts). */
export interface DemoInfo {
  mqttUrl?: string;
  publicUrl?: string;
  topicPrefix?: string;
  deviceAuth?: string;
  deviceKey?: string;
}

export interface ConnectionSettings {
  url: string;
  fleetKey: string;
  topicPrefix: string;
  /** where the URL came from */
  urlFrom: 'flag' | 'demo-file' | 'default';
  /** where the key came from (the key itself is never printed) */
  keyFrom: 'flag' | 'env' | 'demo-file' | 'demo-default';
  /** the demo file that was read, if any */
  demoFile: string | undefined;
}

export interface DeviceArgs {
  kind: 'device';
  conn: ConnectionSettings;
  deviceId: string;
  rid: string | undefined;
  scope: string | undefined;
  device: { name: string; model: string; firmware: string };
  encrypt: boolean;
  /** overall seconds to wait for the result; undefined: until the code expires */
  timeoutSeconds: number | undefined;
  json: boolean;
}

export interface FleetArgs {
  kind: 'fleet';
  conn: ConnectionSettings;
  devices: number;
  durationSeconds: number;
  warmupSeconds: number;
  concurrency: number;
  requestsPerDevice: number | undefined;
  idPrefix: string | undefined;
  scope: string | undefined;
  cancel: boolean;
  json: boolean;
}

export type SimArgs = { kind: 'help' } | DeviceArgs | FleetArgs;

const OPTIONS = {
  id: { type: 'string' },
  url: { type: 'string' },
  key: { type: 'string' },
  prefix: { type: 'string' },
  scope: { type: 'string' },
  rid: { type: 'string' },
  name: { type: 'string' },
  model: { type: 'string' },
  firmware: { type: 'string' },
  encrypt: { type: 'boolean' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  fleet: { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  concurrency: { type: 'string' },
  requests: { type: 'string' },
  'id-prefix': { type: 'string' },
  'no-cancel': { type: 'boolean' },
} as const;

const DEVICE_ONLY = ['id', 'rid', 'name', 'model', 'firmware', 'encrypt', 'timeout'] as const;
const FLEET_ONLY = ['duration', 'warmup', 'concurrency', 'requests', 'id-prefix', 'no-cancel'] as const;

/** The `--help` text. */
export function usage(): string {
  return `Usage:
  npm run sim -- --id <deviceId> [options]        one interactive device
  npm run sim -- --fleet <n> [--duration <s>]     a fleet of devices in a closed request loop (load test)

The device connects to the gateway's MQTT broker with its fleet credential (username = client id = device id,
password = HMAC of the device id under the fleet key), asks for authorization, shows the user code, the address to
open and a QR code, and waits until the gateway pushes the result. Nothing is polled.

Connection (each falls back to .devicegate/demo.json, which the gateway writes in demo mode, then to a default):
  --url <url>          MQTT broker URL (default ${DEFAULT_MQTT_URL})
  --key <key>          fleet key (else $DEVICEGATE_DEVICE_KEY, else the public demo key)
  --prefix <prefix>    topic prefix (default ${DEFAULT_TOPIC_PREFIX})

One device:
  --id <deviceId>      required; letters, digits, '.', '_', '-' (at most 64)
  --scope <scope>      scopes to ask for (default: the gateway's default scope)
  --rid <rid>          request id (default: random); the same rid again resumes that request
  --name <text>        what the device calls itself (default "${DEFAULT_DEVICE_INFO.name}")
  --model <text>       model (default "${DEFAULT_DEVICE_INFO.model}")
  --firmware <text>    firmware version (default "${DEFAULT_DEVICE_INFO.firmware}")
  --encrypt            send a public key; the token comes back as a JWE only this device can decrypt
  --timeout <s>        give up after this many seconds (default: when the code expires)
  --json               one JSON line per reply on stdout (tokens redacted); other messages go to stderr

Fleet:
  --fleet <n>          number of devices (ids <id-prefix>0..n-1)
  --duration <s>       how long to run (default 10)
  --warmup <s>         seconds not counted at the start (default 1)
  --concurrency <n>    connects in flight at once (default 50)
  --requests <n>       stop each device after n round trips
  --id-prefix <p>      device id prefix (default: sim-<random>-)
  --no-cancel          do not cancel each flow after its pending reply (the gateway caps live flows per device)
  --json               print the summary as one JSON line

Exit codes: 0 authorized (fleet: no errors), 1 failed, 2 bad flags, 130 interrupted (Ctrl-C cancels the request).
`;
}

/** Reads `<dir>/.devicegate/demo.json`. `undefined` when there is none; a {@link UsageError} when it is unreadable. */
export async function readDemoFile(dir: string): Promise<{ file: string; info: DemoInfo } | undefined> {
  const file = path.join(dir, DEMO_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UsageError(`${file} is not JSON; delete it or restart the gateway`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UsageError(`${file} is not a JSON object; delete it or restart the gateway`);
  }
  const info: DemoInfo = {};
  for (const k of ['mqttUrl', 'publicUrl', 'topicPrefix', 'deviceAuth', 'deviceKey'] as const) {
    const v = (json as Record<string, unknown>)[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v === '') throw new UsageError(`${file}: "${k}" must be a non-empty string`);
    info[k] = v;
  }
  return { file, info };
}

function positiveNumber(
  flag: string,
  value: string | undefined,
  opts: { integer?: boolean; zero?: boolean } = {},
) {
  if (value === undefined) return undefined;
  const n = Number(value);
  const ok =
    value.trim() !== '' &&
    Number.isFinite(n) &&
    (opts.zero === true ? n >= 0 : n > 0) &&
    (opts.integer !== true || Number.isInteger(n));
  if (!ok) {
    const what = opts.integer === true ? 'an integer' : 'a number';
    throw new UsageError(`--${flag} must be ${what} ${opts.zero === true ? '>= 0' : '> 0'}, got "${value}"`);
  }
  return n;
}

const LABEL = /^[^\p{Cc}\p{Cf}\p{Co}\p{Cs}]{1,64}$/u;
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/;

function label(flag: string, value: string | undefined, fallback: string): string {
  if (value === undefined) return fallback;
  if (!LABEL.test(value)) throw new UsageError(`--${flag} must be 1 to 64 printable characters`);
  return value;
}

function checkUrl(value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new UsageError(`--url "${value}" is not a URL (e.g. ${DEFAULT_MQTT_URL})`);
  }
  if (!['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ws:', 'wss:'].includes(u.protocol)) {
    throw new UsageError(`--url must be mqtt://, mqtts://, ws:// or wss://, got "${u.protocol}"`);
  }
  return value;
}

/**
 * Parses the flags and resolves the connection settings. Precedence: flag, then (key only) `DEVICEGATE_DEVICE_KEY`,
 * then `{cwd}/.devicegate/demo.json`, then the defaults (`mqtt://localhost:1883`, the public demo key). Throws
 * {@link UsageError} for unknown flags, missing or malformed values, and flags of the other mode. Touches no network;
 * reads only the demo file.
 */
export async function parseSimArgs(
  argv: readonly string[],
  ctx: { env: Readonly<Record<string, string | undefined>>; cwd: string },
): Promise<SimArgs> {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))
      throw new UsageError((err as Error).message);
    throw err;
  }
  if (values.help === true) return { kind: 'help' };

  const fleet = values.fleet !== undefined;
  const wrong = (fleet ? DEVICE_ONLY : FLEET_ONLY).filter((f) => values[f] !== undefined);
  if (wrong.length > 0) {
    const list = wrong.map((f) => `--${f}`).join(', ');
    throw new UsageError(
      fleet ? `${list} cannot be used with --fleet` : `${list} only work with --fleet <n>`,
    );
  }

  const demo =
    values.url === undefined || values.key === undefined || values.prefix === undefined
      ? await readDemoFile(ctx.cwd)
      : undefined;
  const envKey = ctx.env['DEVICEGATE_DEVICE_KEY'];
  const url = values.url ?? demo?.info.mqttUrl;
  const key =
    values.key !== undefined
      ? { key: values.key, from: 'flag' as const }
      : envKey !== undefined && envKey !== ''
        ? { key: envKey, from: 'env' as const }
        : demo?.info.deviceKey !== undefined
          ? { key: demo.info.deviceKey, from: 'demo-file' as const }
          : { key: DEMO_DEVICE_KEY, from: 'demo-default' as const };
  if (key.key === '') throw new UsageError('--key must not be empty');
  const topicPrefix = values.prefix ?? demo?.info.topicPrefix ?? DEFAULT_TOPIC_PREFIX;
  if (
    topicPrefix === '' ||
    /[#+\0]/.test(topicPrefix) ||
    topicPrefix.startsWith('/') ||
    topicPrefix.endsWith('/')
  ) {
    throw new UsageError(`--prefix "${topicPrefix}" is not a topic prefix (e.g. ${DEFAULT_TOPIC_PREFIX})`);
  }
  const conn: ConnectionSettings = {
    url: checkUrl(url ?? DEFAULT_MQTT_URL),
    fleetKey: key.key,
    topicPrefix,
    urlFrom: values.url !== undefined ? 'flag' : url !== undefined ? 'demo-file' : 'default',
    keyFrom: key.from,
    demoFile: demo?.file,
  };
  if (values.scope !== undefined && !SCOPE.test(values.scope)) {
    throw new UsageError('--scope must be space-separated scope tokens, e.g. "openid offline_access"');
  }

  if (fleet) {
    const idPrefix = values['id-prefix'];
    if (idPrefix !== undefined && !/^[A-Za-z0-9._-]{1,48}$/.test(idPrefix)) {
      throw new UsageError('--id-prefix must be 1 to 48 of letters, digits, ".", "_", "-"');
    }
    const devices = positiveNumber('fleet', values.fleet, { integer: true })!;
    if (devices > 100_000) throw new UsageError('--fleet is at most 100000 devices');
    return {
      kind: 'fleet',
      conn,
      devices,
      durationSeconds: positiveNumber('duration', values.duration) ?? 10,
      warmupSeconds: positiveNumber('warmup', values.warmup, { zero: true }) ?? 1,
      concurrency: positiveNumber('concurrency', values.concurrency, { integer: true }) ?? 50,
      requestsPerDevice: positiveNumber('requests', values.requests, { integer: true }),
      idPrefix,
      scope: values.scope,
      cancel: values['no-cancel'] !== true,
      json: values.json === true,
    };
  }

  if (values.id === undefined)
    throw new UsageError('--id <deviceId> is required (or --fleet <n> for a fleet)');
  if (!ID_PATTERN.test(values.id)) {
    throw new UsageError(`--id "${values.id}" must be 1 to 64 of letters, digits, ".", "_", "-"`);
  }
  if (values.rid !== undefined && !ID_PATTERN.test(values.rid)) {
    throw new UsageError(`--rid "${values.rid}" must be 1 to 64 of letters, digits, ".", "_", "-"`);
  }
  return {
    kind: 'device',
    conn,
    deviceId: values.id,
    rid: values.rid,
    scope: values.scope,
    device: {
      name: label('name', values.name, DEFAULT_DEVICE_INFO.name),
      model: label('model', values.model, DEFAULT_DEVICE_INFO.model),
      firmware: label('firmware', values.firmware, DEFAULT_DEVICE_INFO.firmware),
    },
    encrypt: values.encrypt === true,
    timeoutSeconds: positiveNumber('timeout', values.timeout),
    json: values.json === true,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Running

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

/** A short, non-secret fingerprint of a token: its first 6 characters and its length. */
export function fingerprint(token: string): string {
  const shown = token.slice(0, Math.min(6, Math.floor(token.length / 3)));
  return `${shown}… (${token.length} chars)`;
}

/** A reply with every token replaced by its {@link fingerprint}, for `--json`. */
export function redact(reply: SimReply): Record<string, unknown> {
  const out: Record<string, unknown> = { ...reply };
  for (const k of ['access_token', 'id_token', 'refresh_token', 'jwe']) {
    const v = out[k];
    if (typeof v === 'string') out[k] = fingerprint(v);
  }
  return out;
}

function minutes(seconds: number): string {
  if (seconds < 90) return `${Math.max(0, Math.round(seconds))} s`;
  return `${Math.round(seconds / 60)} min`;
}

function whereFrom(c: ConnectionSettings): string {
  if (c.urlFrom === 'demo-file') return ` (from ${DEMO_FILE})`;
  if (c.urlFrom === 'default') return ' (default; is the gateway running? start it with `npm start`)';
  return '';
}

function keyHint(c: ConnectionSettings): string {
  switch (c.keyFrom) {
    case 'flag':
      return 'the fleet key given with --key';
    case 'env':
      return 'the fleet key in DEVICEGATE_DEVICE_KEY';
    case 'demo-file':
      return `the demo fleet key from ${DEMO_FILE}`;
    case 'demo-default':
      return 'the public demo fleet key (set --key or DEVICEGATE_DEVICE_KEY to the gateway’s DEVICEGATE_DEVICE_KEY)';
  }
}

function codeBox(code: string, bold: boolean): string[] {
  const inner = `   ${code}   `;
  const bar = '═'.repeat(inner.length);
  const text = bold ? `\x1b[1m${inner}\x1b[22m` : inner;
  return [`      ╔${bar}╗`, `      ║${text}║`, `      ╚${bar}╝`];
}

function qr(text: string): string {
  let out = '';
  qrcode.generate(text, { small: true }, (s) => {
    out = s;
  });
  return out
    .trimEnd()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Seconds of grace after `expires_in` before the device gives up on hearing `expired_token` from the gateway. */
const EXPIRY_GRACE_SECONDS = 15;

async function runDevice(args: DeviceArgs, io: CliIo): Promise<number> {
  // With --json, stdout carries only the JSON lines; what a person reads goes to stderr.
  const human = args.json ? io.stderr : io.stdout;
  const say = (line = '') => void human.write(`${line}\n`);
  const bold = io.stdout.isTTY === true && io.env['NO_COLOR'] === undefined && !args.json;
  const { conn } = args;

  say('devicegate device simulator');
  say(
    `  device   ${args.deviceId}: ${args.device.name} (${args.device.model}, firmware ${args.device.firmware})`,
  );
  say(`  broker   ${conn.url}${whereFrom(conn)}`);
  if (args.encrypt) say('  tokens   encrypted to this device (JWE, ECDH-ES P-256)');

  const device = new SimDevice({
    url: conn.url,
    deviceId: args.deviceId,
    fleetKey: conn.fleetKey,
    topicPrefix: conn.topicPrefix,
    encrypt: args.encrypt,
    reconnectPeriod: 1000,
  });
  try {
    await device.connect();
  } catch (err) {
    if (!(err instanceof SimError)) throw err;
    say(`Could not connect: ${err.message}`);
    if (err.code.startsWith('refused')) say(`  (used ${keyHint(conn)})`);
    return EXIT.failed;
  }

  const rid = args.rid ?? randomRid();
  let shownCode: string | undefined;
  let expiryTimer: NodeJS.Timeout | undefined;
  let timeoutTimer: NodeJS.Timeout | undefined;
  let settled = false;
  /** the gateway gave a final answer (authorized or error): nothing left to cancel */
  let answered = false;
  let resolveFinished!: (code: number) => void;
  const finished = new Promise<number>((resolve) => {
    resolveFinished = resolve;
  });
  /** The first outcome wins; replies that arrive later (a result sent again after a reconnect) are ignored. */
  const finish = (code: number) => {
    if (settled) return;
    settled = true;
    resolveFinished(code);
  };

  const onPending = (r: Extract<SimReply, { status: 'pending' }>) => {
    clearTimeout(expiryTimer);
    expiryTimer = setTimeout(
      () => {
        say('The code expired and the gateway sent no answer. Run the simulator again for a new code.');
        finish(EXIT.failed);
      },
      (r.expires_in + EXPIRY_GRACE_SECONDS) * 1000,
    );
    if (shownCode === r.user_code) {
      say(`Still waiting for approval (code ${r.user_code}, expires in ${minutes(r.expires_in)}).`);
      return;
    }
    shownCode = r.user_code;
    say();
    say('  On your phone or computer, open');
    say();
    say(`      ${r.verification_uri}`);
    say();
    say('  and enter the code');
    say();
    for (const line of codeBox(r.user_code, bold)) say(line);
    say();
    const complete = r.verification_uri_complete;
    if (complete !== undefined) {
      say('  or scan this QR code (it opens the page with the code filled in):');
      say();
      say(qr(complete));
      say(`  ${complete}`);
      say();
    }
    say(`  The code expires in ${minutes(r.expires_in)}.`);
    say();
    say('Waiting for approval… (Ctrl-C to cancel)');
  };

  const onAuthorized = async (r: Extract<SimReply, { status: 'authorized' }>) => {
    say();
    say('Authorized ✓');
    if (r.token_type !== undefined) say(`  token type     ${r.token_type}`);
    if (r.expires_in !== undefined) {
      const at = new Date(Date.now() + r.expires_in * 1000).toLocaleTimeString();
      say(`  expires in     ${minutes(r.expires_in)} (at ${at})`);
    }
    if (r.scope !== undefined) say(`  scope          ${r.scope}`);
    const token = r.access_token;
    if (token !== undefined) say(`  access token   ${fingerprint(token)}`);
    if (r.id_token !== undefined) say(`  id token       ${fingerprint(r.id_token)}`);
    if (r.encrypted === true) say('  (the token arrived encrypted to this device and was decrypted here)');
    try {
      await device.ack(rid);
    } catch {
      say('  (the acknowledgement could not be sent; the gateway forgets the token when the flow ends)');
    }
    finish(EXIT.ok);
  };

  device.onReply((r) => {
    if (settled) return;
    // a persistent session may hand over replies to an earlier run's requests: not ours, skip them
    if (r.rid !== undefined && r.rid !== rid) return;
    if (args.json) io.stdout.write(`${JSON.stringify(redact(r))}\n`);
    if (r.status !== 'pending') answered = true;
    switch (r.status) {
      case 'pending':
        onPending(r);
        return;
      case 'authorized':
        void onAuthorized(r);
        return;
      case 'error': {
        say();
        say(`Authorization failed: ${r.error}`);
        say(`  ${r.error_description}`);
        if (r.retry_after !== undefined) say(`  (the gateway says to retry after ${r.retry_after} s)`);
        finish(EXIT.failed);
        return;
      }
    }
  });
  device.onConnection((e) => {
    if (e === 'lost') say('connection lost, reconnecting…');
    else say('reconnected; asking the gateway for the current state');
  });
  device.onError((e) => {
    switch (e.code) {
      case 'bad_reply':
        say(`(ignored ${e.message})`);
        return;
      case 'decrypt_failed':
        say(`The token could not be decrypted: ${e.message}`);
        finish(EXIT.failed);
        return;
      default:
        if (!e.code.startsWith('refused')) {
          say(`(${e.message})`);
          return;
        }
        // the broker refused the reconnect: mqtt.js stops retrying, so this run cannot finish
        say(`Connection refused: ${e.message}`);
        say(`  (used ${keyHint(conn)})`);
        finish(EXIT.failed);
    }
  });
  const onAbort = () => finish(EXIT.interrupted);
  io.signal?.addEventListener('abort', onAbort, { once: true });
  if (io.signal?.aborted === true) onAbort(); // Ctrl-C while connecting
  if (args.timeoutSeconds !== undefined) {
    timeoutTimer = setTimeout(() => {
      say(`No result within ${args.timeoutSeconds} s; giving up.`);
      finish(EXIT.failed);
    }, args.timeoutSeconds * 1000);
  }

  let requested = false;
  if (!settled) {
    say('connected; asking for authorization…');
    requested = true;
    // not awaited: while the broker is away the publish waits for the reconnect, and Ctrl-C must still work
    device
      .authorize({ rid, device: args.device, ...(args.scope !== undefined && { scope: args.scope }) })
      .catch((err: unknown) => {
        if (settled) return;
        say(`The request could not be sent: ${err instanceof Error ? err.message : String(err)}`);
        finish(EXIT.failed);
      });
  }

  const code = await finished;
  io.signal?.removeEventListener('abort', onAbort);
  clearTimeout(expiryTimer);
  clearTimeout(timeoutTimer);
  if (code === EXIT.interrupted) {
    say();
    say('Interrupted: cancelling the request…');
  }
  // Ctrl-C or giving up: abandon the flow (best effort) so it does not hold one of the device's live-flow slots
  if (code !== EXIT.ok && requested && !answered && device.connected) {
    const cancelled = device.cancel(rid).catch(() => undefined);
    await withTimeout(cancelled, 1000);
  }
  const closed = device.close().catch(() => undefined);
  await withTimeout(closed, 2000);
  return code;
}

async function runFleet(args: FleetArgs, io: CliIo): Promise<number> {
  const say = (line: string) => void (args.json ? io.stderr : io.stdout).write(`${line}\n`);
  const { conn } = args;
  say(`connecting ${args.devices} devices to ${conn.url}${whereFrom(conn)} (${args.concurrency} at a time)…`);
  let fleet;
  try {
    fleet = await connectFleet({
      url: conn.url,
      fleetKey: conn.fleetKey,
      topicPrefix: conn.topicPrefix,
      devices: args.devices,
      connectConcurrency: args.concurrency,
      ...(args.idPrefix !== undefined && { idPrefix: args.idPrefix }),
    });
  } catch (err) {
    if (!(err instanceof SimError)) throw err;
    say(`Could not connect the fleet: ${err.message}`);
    if (err.code.startsWith('refused')) say(`  (used ${keyHint(conn)})`);
    return EXIT.failed;
  }
  try {
    const c = summarize(fleet.connectLatencies);
    say(
      `connected in ${(fleet.connectMs / 1000).toFixed(2)} s: ${fleet.connectRate.toFixed(0)} connects/s, ` +
        `CONNACK p50 ${c.p50.toFixed(1)} ms, p99 ${c.p99.toFixed(1)} ms`,
    );
    const limit =
      args.requestsPerDevice === undefined ? '' : `, at most ${args.requestsPerDevice} per device`;
    say(`running for ${args.durationSeconds} s (warm-up ${args.warmupSeconds} s${limit})…`);
    const r = await runRoundTrips(fleet, {
      durationMs: args.durationSeconds * 1000,
      warmupMs: args.warmupSeconds * 1000,
      cancel: args.cancel,
      ...(args.requestsPerDevice !== undefined && { requestsPerDevice: args.requestsPerDevice }),
      ...(args.scope !== undefined && { scope: args.scope }),
      ...(io.signal !== undefined && { signal: io.signal }),
    });
    const l = r.latencyMs;
    if (args.json) {
      io.stdout.write(
        `${JSON.stringify({
          devices: args.devices,
          connectMs: fleet.connectMs,
          connectRate: fleet.connectRate,
          connectLatencyMs: c,
          completed: r.completed,
          errors: r.errors,
          failed: r.failed,
          perSecond: r.perSecond,
          measuredMs: r.measuredMs,
          latencyMs: l,
          replies: Object.fromEntries(r.replies),
          errorCodes: Object.fromEntries(r.errorCodes),
        })}\n`,
      );
    } else {
      const replies = [...r.replies].map(([s, n]) => `${s} ${n}`).join(', ') || 'none';
      const codes = [...r.errorCodes].map(([s, n]) => `${s} ${n}`).join(', ');
      say(
        `round trips: ${r.completed} in ${(r.measuredMs / 1000).toFixed(1)} s = ${r.perSecond.toFixed(0)}/s; ` +
          `latency p50 ${l.p50.toFixed(2)} ms, p90 ${l.p90.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms, ` +
          `max ${l.max.toFixed(2)} ms`,
      );
      say(
        `replies: ${replies}; errors ${r.errors} (no reply: ${r.failed}${codes === '' ? '' : `; ${codes}`})`,
      );
    }
    if (io.signal?.aborted === true) return EXIT.interrupted;
    return r.errors > 0 || r.completed === 0 ? EXIT.failed : EXIT.ok;
  } finally {
    await fleet.close();
  }
}

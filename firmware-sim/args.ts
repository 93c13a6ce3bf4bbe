/**
 * The `npm run sim` flags: parsing (node:util parseArgs), the usage text, and where the connection settings come
 * from (flags, `DEVICEGATE_DEVICE_KEY`, the demo state file `.devicegate/demo.json`, defaults). The rules a request
 * must follow (ids, scopes, device labels, broker URLs) are the gateway's own, imported from src/core/protocol.ts.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { DEMO_DEVICE_KEY } from '../src/core/crypto.ts';
import { ID_PATTERN, isDeviceLabel, isMqttUrl, isScope } from '../src/core/protocol.ts';
import { type DemoState, type DemoStateFile, DemoStateError, readDemoState } from '../src/demo/state.ts';
import type { DeviceTls } from './connection.ts';
import { DEFAULT_TOPIC_PREFIX } from './device.ts';

export const DEFAULT_MQTT_URL = 'mqtt://localhost:1883';
/** where `--ws` connects without `--url` or a demo file: the gateway's HTTP port, path `/mqtt` */
export const DEFAULT_WS_URL = 'ws://localhost:8080/mqtt';
/** the TLS port `--tls` switches to when the URL is not given */
export const DEFAULT_TLS_PORT = 8883;
export const DEFAULT_DEVICE_INFO = {
  name: 'Living-room TV',
  model: 'DG-TV 5000',
  firmware: '1.4.2',
} as const;

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

export interface ConnectionSettings {
  url: string;
  fleetKey: string;
  topicPrefix: string;
  /** where the URL came from */
  urlFrom: 'flag' | 'demo-file' | 'default';
  /** where the key came from (the key itself is never printed) */
  keyFrom: 'flag' | 'env' | 'demo-file' | 'demo-default';
  /** the demo state file that was read, if any */
  demoFile: string | undefined;
  /** a demo state file that was ignored because the gateway that wrote it is gone */
  staleDemoFile?: { file: string; pid: number };
  /** TLS material read from `--ca`, `--cert`, `--cert-key` (PEM); undefined: none given */
  tls: DeviceTls | undefined;
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
  /** seconds to wait for the gateway's first answer before giving up (no gateway on that broker) */
  answerTimeoutSeconds: number;
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
  'answer-timeout': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  fleet: { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  concurrency: { type: 'string' },
  requests: { type: 'string' },
  'id-prefix': { type: 'string' },
  'no-cancel': { type: 'boolean' },
  tls: { type: 'boolean' },
  ws: { type: 'boolean' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  'cert-key': { type: 'string' },
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];

/** A gateway answers an authorize request within a second or two; 20 s of silence means none is listening. */
export const DEFAULT_ANSWER_TIMEOUT_SECONDS = 20;

const DEVICE_ONLY = [
  'id',
  'rid',
  'name',
  'model',
  'firmware',
  'encrypt',
  'timeout',
  'answer-timeout',
  'cert',
  'cert-key',
] as const;
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
  --tls                connect over TLS: mqtts:// (port ${DEFAULT_TLS_PORT} unless --url says), or wss:// with --ws
  --ws                 connect over WebSocket to the gateway's /mqtt (default ${DEFAULT_WS_URL})
  --ca <file>          trust this CA (PEM) for the broker's certificate, e.g. deploy/certs/ca.crt; implies --tls
  --cert <file>        present this client certificate (PEM; its CN is the device id with
                       DEVICEGATE_DEVICE_AUTH=cert); needs --cert-key; implies --tls; one device only
  --cert-key <file>    the private key (PEM) of --cert (--key is the fleet key)

One device:
  --id <deviceId>      required; letters, digits, '.', '_', '-' (at most 64)
  --scope <scope>      scopes to ask for (default: the gateway's default scope)
  --rid <rid>          request id (default: random); the same rid again resumes that request
  --name <text>        what the device calls itself (default "${DEFAULT_DEVICE_INFO.name}")
  --model <text>       model (default "${DEFAULT_DEVICE_INFO.model}")
  --firmware <text>    firmware version (default "${DEFAULT_DEVICE_INFO.firmware}")
  --encrypt            send a public key; the token comes back as a JWE only this device can decrypt
  --timeout <s>        give up after this many seconds (default: when the code expires)
  --answer-timeout <s> give up when the gateway has not answered at all after this many seconds (default ${DEFAULT_ANSWER_TIMEOUT_SECONDS})
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

function positiveNumber(
  flag: string,
  value: string | undefined,
  opts: { integer?: boolean; zero?: boolean } = {},
): number | undefined {
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

function label(flag: string, value: string | undefined, fallback: string): string {
  if (value === undefined) return fallback;
  if (!isDeviceLabel(value)) throw new UsageError(`--${flag} must be 1 to 64 printable characters`);
  return value;
}

/** The URL the flags ask for: `--url` as given (it must agree with --tls/--ws), else one derived from the demo file. */
function deviceUrl(values: Flags, demo: DemoState | undefined, secure: boolean): string | undefined {
  const ws = values.ws === true;
  if (values.url !== undefined) {
    const { protocol } = new URL(checkUrl(values.url));
    if (ws !== protocol.startsWith('ws')) throw new UsageError(`--ws and --url ${protocol}// do not agree`);
    if (secure && (protocol === 'mqtt:' || protocol === 'ws:')) {
      throw new UsageError(`--tls, --ca and --cert need an mqtts:// or wss:// --url, got ${protocol}//`);
    }
    return values.url;
  }
  if (ws) {
    const url = new URL(demo?.publicUrl ?? DEFAULT_WS_URL);
    url.protocol = secure || url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.pathname = '/mqtt';
    return url.toString();
  }
  if (!secure) return demo?.mqttUrl;
  const url = new URL(demo?.mqttUrl ?? DEFAULT_MQTT_URL);
  return `mqtts://${url.host.replace(/:\d+$/, '')}:${DEFAULT_TLS_PORT}`;
}

/** Reads `--ca`, `--cert`, `--cert-key`: the files must exist, and the certificate comes with its key. */
async function tlsFiles(values: Flags): Promise<DeviceTls | undefined> {
  if ((values.cert === undefined) !== (values['cert-key'] === undefined)) {
    throw new UsageError('--cert and --cert-key come together');
  }
  const read = async (flag: string, file: string | undefined) => {
    if (file === undefined) return {};
    try {
      return { [flag]: await readFile(file) };
    } catch {
      throw new UsageError(`--${flag === 'key' ? 'cert-key' : flag} ${file}: cannot read the file`);
    }
  };
  const tls: DeviceTls = {
    ...(await read('ca', values.ca)),
    ...(await read('cert', values.cert)),
    ...(await read('key', values['cert-key'])),
  };
  return Object.keys(tls).length === 0 ? undefined : tls;
}

function checkUrl(value: string): string {
  if (!URL.canParse(value)) {
    throw new UsageError(`--url "${value}" is not a URL (e.g. ${DEFAULT_MQTT_URL})`);
  }
  if (!isMqttUrl(value)) {
    const { protocol } = new URL(value);
    throw new UsageError(`--url must be mqtt://, mqtts://, ws:// or wss://, got "${protocol}"`);
  }
  return value;
}

function checkTopicPrefix(prefix: string): string {
  if (prefix === '' || /[#+\0]/.test(prefix) || prefix.startsWith('/') || prefix.endsWith('/')) {
    throw new UsageError(`--prefix "${prefix}" is not a topic prefix (e.g. ${DEFAULT_TOPIC_PREFIX})`);
  }
  return prefix;
}

function parseFlags(argv: readonly string[]): Flags {
  try {
    return parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // node:util reports bad flags as TypeErrors with an ERR_PARSE_ARGS_* code
    if (err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError(err.message);
    }
    throw err;
  }
}

async function demoState(cwd: string): Promise<DemoStateFile | undefined> {
  try {
    return await readDemoState(cwd);
  } catch (err) {
    if (err instanceof DemoStateError) throw new UsageError(err.message);
    throw err;
  }
}

/**
 * Resolves the broker URL, fleet key and topic prefix. Precedence: flag, then (key only) `DEVICEGATE_DEVICE_KEY`,
 * then the demo state file in `cwd` (read only when some flag is missing), then the defaults.
 */
async function resolveConnection(
  values: Flags,
  ctx: { env: Readonly<Record<string, string | undefined>>; cwd: string },
): Promise<ConnectionSettings> {
  const found =
    values.url === undefined || values.key === undefined || values.prefix === undefined
      ? await demoState(ctx.cwd)
      : undefined;
  const demo = found !== undefined && 'state' in found ? found : undefined;
  const envKey = ctx.env['DEVICEGATE_DEVICE_KEY'];
  const tls = await tlsFiles(values);
  const url = deviceUrl(values, demo?.state, values.tls === true || tls !== undefined);
  const key =
    values.key !== undefined
      ? { key: values.key, from: 'flag' as const }
      : envKey !== undefined && envKey !== ''
        ? { key: envKey, from: 'env' as const }
        : demo?.state.deviceKey !== undefined
          ? { key: demo.state.deviceKey, from: 'demo-file' as const }
          : { key: DEMO_DEVICE_KEY, from: 'demo-default' as const };
  if (key.key === '') throw new UsageError('--key must not be empty');
  return {
    url: checkUrl(url ?? (values.ws === true ? DEFAULT_WS_URL : DEFAULT_MQTT_URL)),
    fleetKey: key.key,
    topicPrefix: checkTopicPrefix(values.prefix ?? demo?.state.topicPrefix ?? DEFAULT_TOPIC_PREFIX),
    urlFrom: values.url !== undefined ? 'flag' : demo !== undefined ? 'demo-file' : 'default',
    keyFrom: key.from,
    demoFile: demo?.file,
    ...(found !== undefined && 'stale' in found && { staleDemoFile: { file: found.file, pid: found.stale } }),
    tls,
  };
}

function fleetArgs(values: Flags, conn: ConnectionSettings): FleetArgs {
  const idPrefix = values['id-prefix'];
  // the prefix leaves room for the device number within the 64 characters of an id
  if (idPrefix !== undefined && !/^[A-Za-z0-9._-]{1,48}$/.test(idPrefix)) {
    throw new UsageError('--id-prefix must be 1 to 48 of letters, digits, ".", "_", "-"');
  }
  const devices = positiveNumber('fleet', values.fleet, { integer: true }) ?? 0;
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

function deviceArgs(values: Flags, conn: ConnectionSettings): DeviceArgs {
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
    answerTimeoutSeconds:
      positiveNumber('answer-timeout', values['answer-timeout']) ?? DEFAULT_ANSWER_TIMEOUT_SECONDS,
    json: values.json === true,
  };
}

/**
 * Parses the flags and resolves the connection settings (see {@link resolveConnection}: flag, environment, demo
 * state file, default). Throws {@link UsageError} for unknown flags, missing or malformed values, flags of the other
 * mode, and an unusable demo state file. Touches no network; reads only the demo state file.
 */
export async function parseSimArgs(
  argv: readonly string[],
  ctx: { env: Readonly<Record<string, string | undefined>>; cwd: string },
): Promise<SimArgs> {
  const values = parseFlags(argv);
  if (values.help === true) return { kind: 'help' };

  const fleet = values.fleet !== undefined;
  const wrong = (fleet ? DEVICE_ONLY : FLEET_ONLY).filter((f) => values[f] !== undefined);
  if (wrong.length > 0) {
    const list = wrong.map((f) => `--${f}`).join(', ');
    throw new UsageError(
      fleet ? `${list} cannot be used with --fleet` : `${list} only work with --fleet <n>`,
    );
  }
  const conn = await resolveConnection(values, ctx);
  if (values.scope !== undefined && !isScope(values.scope)) {
    throw new UsageError('--scope must be space-separated scope tokens, e.g. "openid offline_access"');
  }
  return fleet ? fleetArgs(values, conn) : deviceArgs(values, conn);
}

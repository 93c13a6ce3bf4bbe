/**
 * How a device reaches the broker, shared by every device client (the interactive {@link SimDevice}, the fleet, the
 * test and bench helpers): the fleet credential (username = client id = device id, password =
 * `devicePassword(fleetKey, deviceId)`, docs/architecture.md), waiting for CONNACK, and what a failed connect means
 * ({@link SimError}).
 */
import { Socket } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { devicePassword } from '../src/core/crypto.ts';
import { systemTimers } from '../src/core/clock.ts';

export type SimErrorCode =
  | 'unreachable'
  | 'connect_timeout'
  | 'refused_protocol'
  | 'refused_identifier'
  | 'refused_server_unavailable'
  | 'refused_credentials'
  | 'refused_not_authorized'
  | 'subscribe_refused'
  | 'not_connected'
  | 'reply_timeout'
  | 'bad_reply'
  | 'decrypt_failed'
  | 'closed';

/** Everything a device client itself reports (as opposed to the gateway's `status: "error"` replies). */
export class SimError extends Error {
  readonly code: SimErrorCode;
  /** the CONNACK return code, for `refused_*` */
  readonly returnCode: number | undefined;
  /** the request the error is about, when there is one */
  readonly rid: string | undefined;

  constructor(
    code: SimErrorCode,
    message: string,
    extra: { returnCode?: number; rid?: string; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'SimError';
    this.code = code;
    this.returnCode = extra.returnCode;
    this.rid = extra.rid;
  }
}

/** CONNACK return codes of MQTT 3.1.1 §3.2.2.3. */
const REFUSALS: Record<number, [SimErrorCode, string]> = {
  1: ['refused_protocol', 'the broker refused the protocol version (the device speaks MQTT 3.1.1)'],
  2: ['refused_identifier', 'the broker refused the client id'],
  3: ['refused_server_unavailable', 'the broker is unavailable'],
  4: ['refused_credentials', 'bad username or password: check the fleet key and the device id'],
  5: ['refused_not_authorized', 'not authorized: check the fleet key and the device id'],
};

/**
 * Turns what mqtt.js reports on a failed connect into a {@link SimError}: a CONNACK refusal (`code` 1–5 or an
 * MQTT 5 reason code) or a socket error (`ECONNREFUSED`, ...).
 */
export function connectError(err: unknown, url: string): SimError {
  const code = err instanceof Error && 'code' in err ? err.code : undefined;
  if (typeof code === 'number') {
    const known = REFUSALS[code];
    if (known !== undefined)
      return new SimError(known[0], `${url}: ${known[1]}`, { returnCode: code, cause: err });
    return new SimError('refused_not_authorized', `${url}: connection refused (code ${code})`, {
      returnCode: code,
      cause: err,
    });
  }
  const text = err instanceof Error ? err.message : String(err);
  return new SimError('unreachable', `cannot reach ${url}: ${text}`, { cause: err });
}

/** Turns TCP_NODELAY on for a TCP socket (without it every round trip waits ~40 ms for Nagle + delayed ACK). */
export function setNoDelay(client: MqttClient): void {
  // a TLS socket is a Socket too; a WebSocket stream has no Nagle switch of its own
  if (client.stream instanceof Socket) client.stream.setNoDelay(true);
}

/** TLS material of a device (PEM contents): the CA that signed the broker's certificate, the device's own pair. */
export interface DeviceTls {
  /** trust this CA instead of the system's (a private CA, deploy/gen-certs.sh) */
  ca?: Buffer;
  /** the device's client certificate (with `DEVICEGATE_DEVICE_AUTH=cert` its CN is the device id) and key */
  cert?: Buffer;
  key?: Buffer;
}

export interface DeviceClientOptions {
  /** `mqtt://host:port` (or `mqtts://`, `ws://`, `wss://`) */
  url: string;
  deviceId: string;
  /** the fleet key the password is derived from; without it (and without `password`) no password is sent */
  fleetKey?: string;
  /** overrides the derived password (to test refusals); `null` sends none */
  password?: string | null;
  /** overrides the username (default: the device id); `null` sends none */
  username?: string | null;
  /** overrides the client id (default: the device id) */
  clientId?: string;
  /** default 4 (MQTT 3.1.1: aedes 1.x speaks nothing newer); others only to test refusals */
  protocolVersion?: 3 | 4 | 5;
  clean: boolean;
  /** seconds */
  keepalive: number;
  /** ms between reconnect attempts; 0 = never reconnect */
  reconnectPeriod: number;
  /** ms mqtt.js waits for CONNACK */
  connectTimeout: number;
  will?: IClientOptions['will'];
  /** for `mqtts://` and `wss://`: the CA to trust and the client certificate to present */
  tls?: DeviceTls;
}

/** Opens an mqtt.js client with the device's credential. Nothing is awaited: see {@link connacked}. */
export function openDeviceClient(o: DeviceClientOptions): MqttClient {
  const username = o.username === undefined ? o.deviceId : o.username;
  const password =
    o.password !== undefined
      ? o.password
      : o.fleetKey !== undefined
        ? devicePassword(o.fleetKey, o.deviceId)
        : null;
  return mqtt.connect(o.url, {
    clientId: o.clientId ?? o.deviceId,
    ...(username !== null && { username }),
    ...(password !== null && { password }),
    protocolVersion: o.protocolVersion ?? 4,
    clean: o.clean,
    keepalive: o.keepalive,
    reconnectPeriod: o.reconnectPeriod,
    connectTimeout: o.connectTimeout,
    ...(o.will !== undefined && { will: o.will }),
    // mqtt.js hands these to tls.connect (mqtts) and to ws (wss); the broker's certificate is always verified
    ...(o.tls !== undefined && { ...o.tls, rejectUnauthorized: true }),
  });
}

/**
 * Resolves on the client's first CONNACK with return code 0 (TCP_NODELAY is on from then). Rejects with a
 * {@link SimError} when the broker refuses (`refused_*`, `returnCode` set), the socket fails or closes first
 * (`unreachable`), or no CONNACK came within `deadlineMs` (`connect_timeout`); the client is ended then, so it does
 * not retry.
 */
export function connacked(client: MqttClient, url: string, deadlineMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = systemTimers.setTimeout(
      () => fail(new SimError('connect_timeout', `${url}: no CONNACK within ${deadlineMs} ms`)),
      deadlineMs,
    );
    const cleanup = () => {
      systemTimers.clear(timer);
      client.off('connect', ok);
      client.off('error', onError);
      client.off('close', onClose);
    };
    function ok() {
      cleanup();
      setNoDelay(client);
      resolve();
    }
    function fail(e: SimError) {
      cleanup();
      // the client is given up: whatever it still reports (a second socket error) has nobody to tell
      client.on('error', () => {});
      client.end(true);
      reject(e);
    }
    function onError(err: Error) {
      fail(connectError(err, url));
    }
    function onClose() {
      fail(new SimError('unreachable', `${url}: the connection closed before CONNACK`));
    }
    client.once('connect', ok);
    client.on('error', onError);
    client.on('close', onClose);
  });
}

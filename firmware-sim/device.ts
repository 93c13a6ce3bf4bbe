/**
 * A simulated device speaking the MQTT contract of DESIGN §2: it connects with the fleet credential (username =
 * client id = device id, password = devicePassword(fleetKey, deviceId)), subscribes to its own `res` topic, sends
 * `req/authorize` / `status` / `ack` / `cancel`, and hands every reply to its listeners. After a reconnect it asks
 * for the state of every flow it still waits on (`req/status`), so a result published while it was away is not lost.
 * With `encrypt: true` it sends an ECDH-ES P-256 public key and decrypts the `jwe` the gateway answers with.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { type CryptoKey, type JWK, compactDecrypt, exportJWK, generateKeyPair } from 'jose';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { devicePassword } from '../src/core/crypto.ts';
import type { AuthorizedReply, DeviceReply } from '../src/core/protocol.ts';
import { ID_PATTERN } from '../src/core/protocol.ts';
import { type Topics, topics } from '../src/transport/topics.ts';

export const DEFAULT_TOPIC_PREFIX = 'devicegate/v1';

export interface SimDeviceOptions {
  /** `mqtt://host:port` (or `mqtts://`, `ws://`) */
  url: string;
  deviceId: string;
  /** the fleet key the device's password is derived from (DESIGN §2) */
  fleetKey: string;
  /** overrides the derived password (to test refusals) */
  password?: string;
  /** default `devicegate/v1` */
  topicPrefix?: string;
  /** MQTT 3.1.1: aedes 1.x speaks nothing newer */
  protocolVersion?: 4;
  /** default false: a persistent session, so a reply published while the device is offline is queued for it */
  clean?: boolean;
  /** ms between reconnect attempts (default 1000; 0 = never reconnect) */
  reconnectPeriod?: number;
  /** ms to wait for CONNACK (default 10 000) */
  connectTimeout?: number;
  /** seconds (default 60) */
  keepalive?: number;
  /** send a public key with `req/authorize` and decrypt the `jwe` the gateway answers with */
  encrypt?: boolean;
}

export interface AuthorizeOptions {
  /** default: a fresh random rid */
  rid?: string;
  scope?: string;
  /** a public key of the caller's own; with `encrypt: true` the device's generated key is sent instead */
  jwk?: JWK;
  /** what the device says about itself (shown on the confirm page) */
  device?: { name?: string; model?: string; firmware?: string };
}

export type ReplyStatus = DeviceReply['status'];

/**
 * A reply as the device sees it. An `authorized` reply that arrived as JWE and was decrypted carries the token
 * fields, no `jwe`, and `encrypted: true`.
 */
export type SimReply = DeviceReply & { readonly encrypted?: true };

export type ReplyMatch = ReplyStatus | readonly ReplyStatus[] | ((reply: SimReply) => boolean);

/** `lost`: the connection dropped (mqtt.js keeps reconnecting); `reconnected`: CONNACK again after a loss. */
export type ConnectionEvent = 'lost' | 'reconnected';

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

/** Everything the simulator itself reports (as opposed to the gateway's `status: "error"` replies). */
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
  const code = (err as { code?: unknown }).code;
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
  const stream = client.stream as Partial<Socket> | undefined;
  if (typeof stream?.setNoDelay === 'function') stream.setNoDelay(true);
}

/** A fresh request id matching `^[A-Za-z0-9._-]{1,64}$`. */
export function randomRid(): string {
  return `r-${randomBytes(9).toString('base64url')}`;
}

/** Parses a `res` payload; `undefined` when it is not a reply of the contract. */
export function parseReply(payload: Uint8Array): DeviceReply | undefined {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const r = json as Record<string, unknown>;
  if (r['rid'] !== undefined && typeof r['rid'] !== 'string') return undefined;
  switch (r['status']) {
    case 'pending':
      return typeof r['user_code'] === 'string' && typeof r['verification_uri'] === 'string'
        ? (json as DeviceReply)
        : undefined;
    case 'authorized':
      return typeof r['rid'] === 'string' ? (json as DeviceReply) : undefined;
    case 'error':
      return typeof r['error'] === 'string' ? (json as DeviceReply) : undefined;
    default:
      return undefined;
  }
}

/** The token fields a JWE carries (DESIGN §2). */
type TokenFields = Omit<AuthorizedReply, 'v' | 'rid' | 'status' | 'jwe'>;

const HISTORY_RIDS = 64;
const DEFAULT_WAIT_MS = 30_000;

interface Waiter {
  rid: string;
  match: (r: SimReply) => boolean;
  resolve: (r: SimReply) => void;
  reject: (e: SimError) => void;
  timer: NodeJS.Timeout;
}

/**
 * One simulated device. `connect()` first; then `authorize()` and `waitFor()`; `close()` at the end.
 * Not safe to share between tests: each instance owns one mqtt.js client.
 */
export class SimDevice {
  readonly deviceId: string;
  readonly topics: Topics;
  readonly #o: SimDeviceOptions;
  #client: MqttClient | undefined;
  #keys: { privateKey: CryptoKey; publicJwk: JWK } | undefined;
  #everConnected = false;
  #online = false;
  #closed = false;
  /** flows sent with `authorize` that have no final reply yet: asked about again after a reconnect */
  readonly #waiting = new Set<string>();
  readonly #history = new Map<string, SimReply[]>();
  readonly #waiters = new Set<Waiter>();
  readonly #replyListeners = new Set<(r: SimReply) => void>();
  readonly #connectionListeners = new Set<(e: ConnectionEvent) => void>();
  readonly #errorListeners = new Set<(e: SimError) => void>();
  /** replies are handled one after another (decryption is async), so listeners see them in arrival order */
  #queue: Promise<void> = Promise.resolve();

  constructor(options: SimDeviceOptions) {
    if (!ID_PATTERN.test(options.deviceId)) {
      throw new TypeError(`device id "${options.deviceId}" must match ${ID_PATTERN.source}`);
    }
    this.#o = options;
    this.deviceId = options.deviceId;
    this.topics = topics(options.topicPrefix ?? DEFAULT_TOPIC_PREFIX);
  }

  /** The mqtt.js client (for tests that break its socket). Throws before `connect()`. */
  get client(): MqttClient {
    if (this.#client === undefined) throw new SimError('not_connected', 'connect() first');
    return this.#client;
  }

  /** True while the device has a live connection (CONNACK received, not yet closed). */
  get connected(): boolean {
    return this.#online;
  }

  /** The public key sent with `authorize` when `encrypt` is on (after `connect()`). */
  get publicJwk(): JWK | undefined {
    return this.#keys?.publicJwk;
  }

  /**
   * Connects and subscribes to `{prefix}/{deviceId}/res` (QoS 1). Resolves once the subscription is granted, so no
   * reply to a later request can be missed. Rejects with a {@link SimError}: `refused_*` when the broker refused the
   * CONNECT (bad credentials, protocol version), `unreachable`, `connect_timeout`, or `subscribe_refused`; the client
   * is closed then and does not retry.
   */
  async connect(): Promise<void> {
    if (this.#client !== undefined) throw new Error('connect() was already called');
    const o = this.#o;
    if (o.encrypt === true && this.#keys === undefined) {
      const { privateKey, publicKey } = await generateKeyPair('ECDH-ES', { crv: 'P-256' });
      const jwk = await exportJWK(publicKey);
      this.#keys = {
        privateKey,
        publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, use: 'enc' } as JWK,
      };
    }
    const connectTimeout = o.connectTimeout ?? 10_000;
    const options: IClientOptions = {
      clientId: o.deviceId,
      username: o.deviceId,
      password: o.password ?? devicePassword(o.fleetKey, o.deviceId),
      protocolVersion: o.protocolVersion ?? 4,
      clean: o.clean ?? false,
      keepalive: o.keepalive ?? 60,
      reconnectPeriod: o.reconnectPeriod ?? 1000,
      connectTimeout,
    };
    const client = mqtt.connect(o.url, options);
    this.#client = client;
    let connecting: ((err: SimError) => void) | undefined;
    // mqtt.js emits 'error' for refused CONNACKs and socket errors; without a listener Node would throw.
    client.on('error', (err) => {
      const e = connectError(err, o.url);
      if (connecting !== undefined) connecting(e);
      // while reconnecting, socket errors show as 'lost' / 'reconnected'; a refusal ends the retries: report it
      else if (e.returnCode !== undefined) this.#emitError(e);
    });
    client.on('connect', () => this.#onConnect());
    client.on('close', () => this.#onClose());
    client.on('message', (topic, payload) => {
      if (topic === this.topics.response(this.deviceId)) this.#enqueue(payload);
    });

    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => fail(new SimError('connect_timeout', `${o.url}: no CONNACK within ${connectTimeout} ms`)),
          connectTimeout,
        );
        const ok = () => {
          clearTimeout(timer);
          connecting = undefined;
          resolve();
        };
        const fail = (e: SimError) => {
          clearTimeout(timer);
          client.off('connect', ok);
          connecting = undefined;
          reject(e);
        };
        connecting = fail;
        client.once('connect', ok);
      });
      try {
        await client.subscribeAsync(this.topics.response(this.deviceId), { qos: 1 });
      } catch (err) {
        throw new SimError('subscribe_refused', 'the broker refused the subscription to its own res topic', {
          cause: err,
        });
      }
    } catch (err) {
      this.#closed = true;
      client.end(true);
      throw err;
    }
  }

  /**
   * Publishes `req/authorize` (QoS 1) and resolves with its rid once the broker took it. The replies arrive through
   * {@link onReply} / {@link waitFor}. Until a final reply (authorized or error) the flow counts as waited on and is
   * asked about again after every reconnect.
   */
  async authorize(req: AuthorizeOptions = {}): Promise<string> {
    const rid = req.rid ?? randomRid();
    const jwk = this.#keys?.publicJwk ?? req.jwk;
    const body = {
      rid,
      ...(req.scope !== undefined && { scope: req.scope }),
      ...(jwk !== undefined && { jwk }),
      ...(req.device !== undefined && { device: req.device }),
    };
    this.#waiting.add(rid);
    await this.#publish('authorize', body);
    return rid;
  }

  /** Publishes `req/status`: the gateway re-sends the flow's current state. */
  async status(rid: string): Promise<void> {
    await this.#publish('status', { rid });
  }

  /** Publishes `req/ack`: the token arrived, the gateway may forget its copy. */
  async ack(rid: string): Promise<void> {
    this.#waiting.delete(rid);
    await this.#publish('ack', { rid });
  }

  /** Publishes `req/cancel`: abandon a pending flow. */
  async cancel(rid: string): Promise<void> {
    this.#waiting.delete(rid);
    await this.#publish('cancel', { rid });
  }

  /** Calls `cb` with every reply, in arrival order. Returns a function that removes the listener. */
  onReply(cb: (reply: SimReply) => void): () => void {
    this.#replyListeners.add(cb);
    return () => this.#replyListeners.delete(cb);
  }

  /** Calls `cb` when the connection is lost and when it is back. Returns a function that removes the listener. */
  onConnection(cb: (event: ConnectionEvent) => void): () => void {
    this.#connectionListeners.add(cb);
    return () => this.#connectionListeners.delete(cb);
  }

  /** Calls `cb` with problems found after `connect()`: malformed replies, JWE that does not decrypt, refusals. */
  onError(cb: (err: SimError) => void): () => void {
    this.#errorListeners.add(cb);
    return () => this.#errorListeners.delete(cb);
  }

  /** The replies received so far for `rid` (the last {@link HISTORY_RIDS} rids are kept). */
  replies(rid: string): readonly SimReply[] {
    return this.#history.get(rid) ?? [];
  }

  /**
   * Resolves with the first reply for `rid` that matches (a status, a list of them, or a predicate). Replies that
   * already arrived count unless `past: false`, so a reply that came before the call is not missed. Replies for
   * other rids are ignored here (they still reach {@link onReply}). Rejects with a {@link SimError}: `reply_timeout`
   * after `timeoutMs`, `decrypt_failed` when a JWE for `rid` does not decrypt, `closed` on {@link close}.
   */
  waitFor(
    rid: string,
    match: ReplyMatch,
    timeoutMs: number = DEFAULT_WAIT_MS,
    opts: { past?: boolean } = {},
  ): Promise<SimReply> {
    const test =
      typeof match === 'function'
        ? match
        : typeof match === 'string'
          ? (r: SimReply) => r.status === match
          : (r: SimReply) => match.includes(r.status);
    if (opts.past !== false) {
      const earlier = this.replies(rid).find(test);
      if (earlier !== undefined) return Promise.resolve(earlier);
    }
    if (this.#closed) return Promise.reject(new SimError('closed', 'the device is closed', { rid }));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        rid,
        match: test,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(
            new SimError('reply_timeout', `no matching reply for ${rid} within ${timeoutMs} ms`, { rid }),
          );
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Disconnects (no reconnect), rejects pending `waitFor` calls with `closed`. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new SimError('closed', 'the device is closed', { rid: w.rid }));
    }
    this.#waiters.clear();
    this.#waiting.clear();
    const client = this.#client;
    if (client !== undefined && !client.disconnecting && !client.disconnected)
      await client.endAsync(!this.#online);
  }

  async #publish(action: 'authorize' | 'status' | 'ack' | 'cancel', body: object): Promise<void> {
    if (this.#client === undefined || this.#closed) throw new SimError('not_connected', 'connect() first');
    await this.#client.publishAsync(this.topics.request(this.deviceId, action), JSON.stringify(body), {
      qos: 1,
    });
  }

  #onConnect(): void {
    if (this.#client !== undefined) setNoDelay(this.#client);
    this.#online = true;
    if (!this.#everConnected) {
      this.#everConnected = true;
      return;
    }
    for (const cb of this.#connectionListeners) cb('reconnected');
    // Resume (DESIGN §2 "Delivery"): ask for every flow still waited on; a result published while the device was
    // away comes back even when the broker kept no session for it.
    for (const rid of this.#waiting) {
      this.status(rid).catch((err: unknown) =>
        this.#emitError(new SimError('not_connected', `status for ${rid} not sent`, { rid, cause: err })),
      );
    }
  }

  #onClose(): void {
    const wasOnline = this.#online;
    this.#online = false;
    if (wasOnline && !this.#closed) for (const cb of this.#connectionListeners) cb('lost');
  }

  #enqueue(payload: Buffer): void {
    this.#queue = this.#queue.then(() => this.#handle(payload));
  }

  async #handle(payload: Buffer): Promise<void> {
    const parsed = parseReply(payload);
    if (parsed === undefined) {
      this.#emitError(
        new SimError('bad_reply', `a reply that is not a devicegate reply (${payload.length} bytes)`),
      );
      return;
    }
    let reply: SimReply = parsed;
    if (parsed.status === 'authorized' && parsed.jwe !== undefined && this.#keys !== undefined) {
      try {
        reply = await this.#decrypt(parsed, parsed.jwe, this.#keys.privateKey);
      } catch (err) {
        const e = new SimError('decrypt_failed', `the JWE for ${parsed.rid} did not decrypt`, {
          rid: parsed.rid,
          cause: err,
        });
        for (const w of this.#waiters) {
          if (w.rid !== parsed.rid) continue;
          clearTimeout(w.timer);
          this.#waiters.delete(w);
          w.reject(e);
        }
        this.#emitError(e);
        return;
      }
    }
    this.#deliver(reply);
  }

  async #decrypt(reply: AuthorizedReply, jwe: string, key: CryptoKey): Promise<SimReply> {
    const { plaintext } = await compactDecrypt(jwe, key, {
      keyManagementAlgorithms: ['ECDH-ES'],
      contentEncryptionAlgorithms: ['A256GCM'],
    });
    const fields = JSON.parse(new TextDecoder().decode(plaintext)) as TokenFields;
    const { jwe: _jwe, ...rest } = reply;
    return { ...rest, ...fields, v: reply.v, rid: reply.rid, status: 'authorized', encrypted: true };
  }

  #deliver(reply: SimReply): void {
    const rid = reply.rid;
    if (rid !== undefined) {
      if (reply.status !== 'pending') this.#waiting.delete(rid);
      let list = this.#history.get(rid);
      if (list === undefined) {
        list = [];
        this.#history.set(rid, list);
        if (this.#history.size > HISTORY_RIDS) {
          const oldest = this.#history.keys().next().value;
          if (oldest !== undefined) this.#history.delete(oldest);
        }
      }
      list.push(reply);
      for (const w of this.#waiters) {
        if (w.rid !== rid || !w.match(reply)) continue;
        clearTimeout(w.timer);
        this.#waiters.delete(w);
        w.resolve(reply);
      }
    }
    for (const cb of this.#replyListeners) cb(reply);
  }

  #emitError(err: SimError): void {
    for (const cb of this.#errorListeners) cb(err);
  }
}

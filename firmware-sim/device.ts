/**
 * A simulated device speaking the MQTT device contract (docs/architecture.md): it connects with the fleet credential
 * (username = client id = device id, password = devicePassword(fleetKey, deviceId)), subscribes to its own `res`
 * topic, sends `req/authorize` / `status` / `ack` / `cancel`, and hands every reply to its listeners. After a reconnect
 * it asks for the state of every flow it still waits on (`req/status`), so a result published while it was away is
 * not lost. With `encrypt: true` it sends an ECDH-ES P-256 public key and decrypts the `jwe` the gateway answers with.
 */
import type { CryptoKey, JWK } from 'jose';
import type { MqttClient } from 'mqtt';
import { ID_PATTERN } from '../src/core/protocol.ts';
import { type Topics, topics } from '../src/transport/topics.ts';
import { decryptReply, generateDeviceKeys } from './encryption.ts';
import {
  type DeviceTls,
  SimError,
  connacked,
  connectError,
  openDeviceClient,
  setNoDelay,
} from './connection.ts';
import { ReplyLog } from './reply-log.ts';
import { type ReplyStatus, type SimReply, parseReply, randomRid } from './replies.ts';

export const DEFAULT_TOPIC_PREFIX = 'devicegate/v1';

export interface SimDeviceOptions {
  /** `mqtt://host:port` (or `mqtts://`, `ws://`) */
  url: string;
  deviceId: string;
  /** the fleet key the device's password is derived from */
  fleetKey: string;
  /** overrides the derived password (to test refusals) */
  password?: string;
  /** mqtts:// / wss://: the CA to trust and the client certificate (PEM) */
  tls?: DeviceTls | undefined;
  /** default `devicegate/v1` */
  topicPrefix?: string;
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

export type ReplyMatch = ReplyStatus | readonly ReplyStatus[] | ((reply: SimReply) => boolean);

/** `lost`: the connection dropped (mqtt.js keeps reconnecting); `reconnected`: CONNACK again after a loss. */
export type ConnectionEvent = 'lost' | 'reconnected';

const DEFAULT_WAIT_MS = 30_000;

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
  readonly #log = new ReplyLog();
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
    if (o.encrypt === true && this.#keys === undefined) this.#keys = await generateDeviceKeys();
    const connectTimeout = o.connectTimeout ?? 10_000;
    const client = openDeviceClient({
      url: o.url,
      deviceId: o.deviceId,
      fleetKey: o.fleetKey,
      ...(o.password !== undefined && { password: o.password }),
      ...(o.tls !== undefined && { tls: o.tls }),
      clean: o.clean ?? false,
      keepalive: o.keepalive ?? 60,
      reconnectPeriod: o.reconnectPeriod ?? 1000,
      connectTimeout,
    });
    this.#client = client;
    // mqtt.js emits 'error' for refused CONNACKs and socket errors; without a listener Node would throw. Before the
    // first CONNACK `connacked` reports them; while reconnecting, socket errors show as 'lost' / 'reconnected', and
    // a refusal ends the retries: report it.
    client.on('error', (err) => {
      if (!this.#everConnected) return;
      const e = connectError(err, o.url);
      if (e.returnCode !== undefined) this.#emitError(e);
    });
    client.on('close', () => this.#onClose());
    client.on('message', (topic, payload) => {
      if (topic === this.topics.response(this.deviceId)) this.#enqueue(payload);
    });

    try {
      await connacked(client, o.url, connectTimeout);
      this.#online = true;
      this.#everConnected = true;
      client.on('connect', () => this.#onReconnect());
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

  /** The replies received so far for `rid` (only the latest rids are kept: `HISTORY_RIDS` in reply-log.ts). */
  replies(rid: string): readonly SimReply[] {
    return this.#log.replies(rid);
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
    return this.#log.next(rid, test, timeoutMs);
  }

  /** Disconnects (no reconnect), rejects pending `waitFor` calls with `closed`. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#log.close();
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

  #onReconnect(): void {
    if (this.#client !== undefined) setNoDelay(this.#client);
    this.#online = true;
    for (const cb of this.#connectionListeners) cb('reconnected');
    // Resume (docs/architecture.md, "Delivery"): ask for every flow still waited on; a result published while the
    // device was away comes back even when the broker kept no session for it.
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
        reply = await decryptReply(parsed, parsed.jwe, this.#keys.privateKey);
      } catch (err) {
        const e = new SimError('decrypt_failed', `the JWE for ${parsed.rid} did not decrypt`, {
          rid: parsed.rid,
          cause: err,
        });
        this.#log.fail(parsed.rid, e);
        this.#emitError(e);
        return;
      }
    }
    this.#deliver(reply);
  }

  #deliver(reply: SimReply): void {
    const rid = reply.rid;
    if (rid !== undefined) {
      if (reply.status !== 'pending') this.#waiting.delete(rid);
      this.#log.record(rid, reply);
    }
    for (const cb of this.#replyListeners) cb(reply);
  }

  #emitError(err: SimError): void {
    for (const cb of this.#errorListeners) cb(err);
  }
}

/**
 * Embedded broker mode (no `DEVICEGATE_MQTT_URL`): the gateway runs an aedes broker in its own process. Devices
 * connect to it; the gateway reads their requests from aedes' `published` hook (no MQTT client of its own) and
 * publishes replies straight into the broker.
 *
 * The broker's hooks enforce DESIGN §2 and fail closed:
 * - authenticate: username = client id = device id (`^[A-Za-z0-9._-]{1,64}$`), password = the fleet-key HMAC of the
 *   id (`hmac`), or any valid id (`none`, demos only). A Will that the device could not publish itself is refused at
 *   CONNECT, so no session exists for it.
 * - authorizePublish: only `{prefix}/{ownId}/req/{one level}`, never retained, never `$…`, never a wildcard.
 * - authorizeSubscribe: only exactly `{prefix}/{ownId}/res` (others get SUBACK 0x80).
 * - authorizeForward: a message leaves the broker only towards the client whose own `res` topic it is.
 * - A frame guard on each socket closes it when an MQTT packet announces more than {@link MAX_PACKET_BYTES}, before
 *   the bytes are buffered or parsed; payloads below it on a device's own topic reach the handler, which answers
 *   `invalid_request` when they exceed the 4 KiB of the contract.
 *
 * aedes 1.x speaks MQTT 3.1 and 3.1.1 only: an MQTT 5 CONNECT gets CONNACK return code 1 ("unacceptable protocol
 * version").
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { EventEmitter } from 'node:events';
import { Aedes, type AedesPublishPacket, type Client, type ConnectPacket } from 'aedes';
import type { Logger } from 'pino';
import { checkDevicePassword } from '../core/crypto.ts';
import { UnavailableError } from '../core/errors.ts';
import { type DeviceReply, ID_PATTERN } from '../core/protocol.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type PortFallback, listenWithFallback } from '../net/listen.ts';
import type { Topics } from './topics.ts';
import type { DeviceRequestHandler, DeviceTransport, IncomingRequest, TransportStatus } from './types.ts';

/** Largest MQTT packet (Remaining Length) a client may send; a larger one closes its connection unread. */
export const MAX_PACKET_BYTES = 64 * 1024;

/** Tuning of the aedes instance (documented aedes options; the defaults are in aedes.js). */
const AEDES_LIMITS = {
  /** messages routed in parallel by mqemitter (default 100) */
  concurrency: 256,
  /** a socket that has not sent CONNECT by then is closed (default 30 s) */
  connectTimeout: 10_000,
  /** a client whose socket does not drain by then is closed, so it cannot stall others (default 60 s) */
  drainTimeout: 20_000,
  /** keepalive 0 (no liveness check at all) and keepalives above one hour are refused (default: any) */
  keepaliveLimit: 3600,
  /** device ids are up to 64 characters (aedes applies this to MQTT 3.1 only; the id pattern covers 3.1.1) */
  maxClientsIdLength: 64,
  /** inbound QoS 2 publishes awaiting PUBREL per client (default 1000); devices use QoS 1 */
  maxInflightInbound: 32,
  /** packets a client may pipeline before its CONNACK (default 42) */
  queueLimit: 42,
} as const;

/** Topic levels a client may use; the contract needs the prefix's levels plus three. aedes' ceiling is 100. */
const MIN_TOPIC_LEVELS = 16;

type ConnectRefusal = 'bad_username' | 'bad_password' | 'client_id_mismatch' | 'will_not_allowed';
/** CONNACK return codes of MQTT 3.1.1 §3.2.2.3 that aedes passes through from `authenticate`. */
const RETURN_CODE: Record<ConnectRefusal, 4 | 5> = {
  bad_username: 4,
  bad_password: 4,
  client_id_mismatch: 5,
  will_not_allowed: 5,
};

export interface EmbeddedBrokerOptions {
  /** interface to listen on */
  host: string;
  /** TCP port; 0 picks a free one (read it from {@link EmbeddedBroker.port} after `start()`) */
  port: number;
  /** the demo only: when `port` is taken, try the following ports (and say which one was used) */
  portFallback?: PortFallback | undefined;
  topics: Topics;
  /** `hmac`: password = devicePassword(deviceKey, id). `none`: any valid id, no password (demos only). */
  deviceAuth: 'hmac' | 'none';
  /** the fleet key device passwords derive from */
  deviceKey: string;
  log: Logger;
  metrics: Metrics;
}

/** The publish-side rule of a device: why `topic` is refused to `deviceId`, or `undefined` when it is allowed. */
type PublishRefusal = 'reserved' | 'wildcard' | 'retain' | 'not_own_request';

export class EmbeddedBroker implements DeviceTransport {
  readonly #o: EmbeddedBrokerOptions;
  readonly #maxTopicLevels: number;
  #broker: Aedes | undefined;
  #server: Server | undefined;
  #serverClosed: Promise<void> | undefined;
  #port: number;
  #handler: DeviceRequestHandler | undefined;
  #closing = false;
  #closed: Promise<void> | undefined;
  readonly #sockets = new Set<Socket>();
  readonly #inFlight = new Set<Promise<void>>();
  /** the Will of each CONNECT, seen in `preConnect` and judged in `authenticate` (which is not given the packet) */
  readonly #wills = new WeakMap<Client, ConnectPacket['will'] | null>();

  constructor(options: EmbeddedBrokerOptions) {
    this.#o = options;
    this.#port = options.port;
    const prefixLevels = options.topics.prefix.split('/').length;
    this.#maxTopicLevels = Math.min(100, Math.max(MIN_TOPIC_LEVELS, prefixLevels + 3));
  }

  /** The port devices connect to: the bound one once `start()` has resolved. */
  get port(): number {
    return this.#port;
  }

  /** Starts aedes and listens; resolves once devices can connect. Rejects (and frees what it opened) if the port is taken. */
  async start(handler: DeviceRequestHandler): Promise<void> {
    if (this.#broker !== undefined) throw new Error('EmbeddedBroker already started');
    this.#handler = handler;
    const broker = await Aedes.createBroker({
      ...AEDES_LIMITS,
      maxTopicLevels: this.#maxTopicLevels,
      preConnect: (client, packet, done) => {
        this.#wills.set(client, packet.will ?? null);
        done(null, true);
      },
      authenticate: (client, username, password, done) => {
        const refusal = this.#authenticate(client, username, password);
        if (refusal === undefined) return done(null, true);
        const returnCode = RETURN_CODE[refusal];
        done(Object.assign(new Error(refusal), { returnCode }), false);
      },
      authorizePublish: (client, packet, done) => {
        const refusal = client === null ? 'not_own_request' : this.#publishRefusal(client.id, packet);
        if (refusal === undefined) return done(null);
        this.#deny('publish', refusal, client?.id, packet.topic);
        done(new Error(`publish refused: ${refusal}`));
      },
      authorizeSubscribe: (client, sub, done) => {
        if (sub.topic === this.#o.topics.response(client.id)) return done(null, sub);
        this.#deny('subscribe', 'not_own_response', client.id, sub.topic);
        // a null subscription is aedes' way to answer SUBACK 0x80 (failure) and keep the connection
        done(null, null);
      },
      authorizeForward: (client, packet) => {
        if (packet.topic === this.#o.topics.response(client.id)) return packet;
        this.#deny('forward', 'not_own_response', client.id, packet.topic);
        return null;
      },
      published: (packet, client: Client | null, done) => {
        // broker-originated publishes (replies, $SYS) have no client and are never requests
        if (client !== null && !this.#closing) this.#onPublished(packet, client);
        done(null);
      },
    });
    forgetCleanSessionQueues(broker);
    // aedes emits 'error' for persistence failures; its typings omit the event, an unhandled one would crash
    (broker as EventEmitter).on('error', (err: Error) =>
      this.#o.log.error({ err: err.message }, 'embedded broker error'),
    );
    broker.on('clientReady', (client) =>
      this.#o.log.debug({ deviceId: client.id, remoteAddress: remoteAddress(client) }, 'device connected'),
    );
    broker.on('clientDisconnect', (client) =>
      this.#o.log.debug({ deviceId: client.id }, 'device disconnected'),
    );
    broker.on('clientError', (client, err) =>
      this.#o.log.debug({ deviceId: client.id, err: err.message }, 'device connection closed on error'),
    );
    broker.on('connectionError', (_client, err) =>
      this.#o.log.debug({ err: err.message }, 'connection closed before CONNECT completed'),
    );
    this.#broker = broker;

    const server = createServer({ noDelay: true }, (socket) => this.#accept(broker, socket));
    this.#server = server;
    try {
      this.#port = await listenWithFallback(server, this.#o.host, this.#o.port, this.#o.portFallback);
    } catch (err) {
      this.#server = undefined;
      await new Promise<void>((resolve) => broker.close(resolve));
      this.#broker = undefined;
      throw new UnavailableError(
        'broker',
        `embedded broker cannot listen on ${this.#o.host}:${this.#o.port}`,
        {
          cause: err,
        },
      );
    }
    server.on('error', (err) => this.#o.log.error({ err: err.message }, 'embedded broker listener error'));
    this.#serverClosed = new Promise((resolve) => server.once('close', resolve));
    this.#o.metrics.gauge(
      'devicegate_mqtt_clients',
      'Devices connected to the embedded broker.',
      () => this.#broker?.connectedClients ?? 0,
    );
    this.#o.log.info(
      { host: this.#o.host, port: this.#port, deviceAuth: this.#o.deviceAuth },
      'embedded MQTT broker listening',
    );
  }

  /**
   * Publishes `reply` on `{prefix}/{deviceId}/res`: QoS 1, not retained, not dup. Resolves once aedes has routed it
   * (written to the device's socket, or queued in its persistent session). Rejects with `UnavailableError` when the
   * broker is not running, and with a plain `Error` for a device id outside the contract's pattern.
   */
  publish(deviceId: string, reply: DeviceReply): Promise<void> {
    if (!ID_PATTERN.test(deviceId)) return Promise.reject(new Error('invalid device id'));
    const broker = this.#broker;
    if (broker === undefined || broker.closed) {
      return Promise.reject(new UnavailableError('broker', 'the embedded broker is not running'));
    }
    return new Promise((resolve, reject) => {
      broker.publish(
        {
          cmd: 'publish',
          topic: this.#o.topics.response(deviceId),
          payload: Buffer.from(JSON.stringify(reply)),
          qos: 1,
          retain: false,
          dup: false,
        },
        (err) =>
          err
            ? reject(new UnavailableError('broker', 'the embedded broker refused the reply', { cause: err }))
            : resolve(),
      );
    });
  }

  status(): TransportStatus {
    const listening = this.#server?.listening === true && !this.#closing;
    const clients = this.#broker?.connectedClients ?? 0;
    return {
      connected: listening,
      detail: `embedded aedes on ${this.#o.host}:${this.#port}, ${clients} clients`,
    };
  }

  /**
   * Stops accepting connections and requests, waits for the handlers in flight (their replies still reach connected
   * devices), then closes every client, aedes and the listener. Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    this.#server?.close();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    const broker = this.#broker;
    if (broker !== undefined) await new Promise<void>((resolve) => broker.close(resolve));
    // sockets that never completed CONNECT are not aedes clients; close them too so the listener can finish
    for (const socket of this.#sockets) socket.destroy();
    await this.#serverClosed;
    this.#o.log.info('embedded MQTT broker closed');
  }

  #accept(broker: Aedes, socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    guardFrames(socket, MAX_PACKET_BYTES, (reason) => {
      this.#o.metrics.inc('devicegate_mqtt_dropped_connections_total', { reason });
      this.#o.log.debug({ remoteAddress: socket.remoteAddress, reason }, 'connection closed: bad MQTT frame');
    });
    broker.handle(socket);
  }

  /** Why this CONNECT is refused, or `undefined` to accept it. Logs refusals (never the password). */
  #authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
  ): ConnectRefusal | undefined {
    let refusal: ConnectRefusal | undefined;
    if (username === undefined || !ID_PATTERN.test(username)) refusal = 'bad_username';
    else if (client.id !== username) refusal = 'client_id_mismatch';
    else if (this.#o.deviceAuth === 'hmac' && !checkDevicePassword(this.#o.deviceKey, username, password)) {
      refusal = 'bad_password';
    } else {
      const will = this.#wills.get(client);
      // aedes authorizes a Will only when it is about to publish it; refuse it up front instead (SECURITY A.10)
      if (will !== undefined && will !== null && this.#publishRefusal(username, will) !== undefined) {
        refusal = 'will_not_allowed';
      }
    }
    this.#wills.delete(client);
    if (refusal !== undefined) {
      this.#o.metrics.inc('devicegate_mqtt_refused_connects_total', { reason: refusal });
      this.#o.log.debug(
        {
          deviceId: username?.slice(0, 64),
          clientId: client.id?.slice(0, 64),
          reason: refusal,
          remoteAddress: remoteAddress(client),
        },
        'device connection refused',
      );
    }
    return refusal;
  }

  #publishRefusal(deviceId: string, packet: { topic: string; retain?: boolean }): PublishRefusal | undefined {
    const { topic } = packet;
    if (topic.startsWith('$')) return 'reserved';
    if (topic.includes('#') || topic.includes('+') || topic.includes('\0')) return 'wildcard';
    if (packet.retain === true) return 'retain';
    if (this.#o.topics.parseRequest(topic)?.deviceId !== deviceId) return 'not_own_request';
    return undefined;
  }

  #deny(
    op: 'publish' | 'subscribe' | 'forward',
    reason: string,
    deviceId: string | undefined,
    topic: string,
  ): void {
    this.#o.metrics.inc('devicegate_mqtt_denied_total', { op, reason });
    this.#o.log.debug({ deviceId, op, reason, topic: topic.slice(0, 256) }, 'device operation refused');
  }

  #onPublished(packet: AedesPublishPacket, client: Client): void {
    const parsed = this.#o.topics.parseRequest(packet.topic);
    if (parsed === undefined) return;
    // authorizePublish already bound the topic to the client; check again and drop on any doubt
    if (parsed.deviceId !== client.id) {
      this.#deny('publish', 'identity_mismatch', client.id, packet.topic);
      return;
    }
    const address = remoteAddress(client);
    const payload =
      typeof packet.payload === 'string' ? Buffer.from(packet.payload) : Buffer.from(packet.payload);
    const request: IncomingRequest = {
      deviceId: parsed.deviceId,
      action: parsed.action,
      rawAction: parsed.rawAction,
      payload,
      ...(address !== undefined && { remoteAddress: address }),
    };
    this.#dispatch(request);
  }

  #dispatch(request: IncomingRequest): void {
    const handler = this.#handler;
    if (handler === undefined) return;
    const fail = (err: unknown) =>
      this.#o.log.error(
        {
          deviceId: request.deviceId,
          action: request.rawAction,
          err: err instanceof Error ? err.message : String(err),
        },
        'device request handler failed',
      );
    let running: Promise<void>;
    try {
      running = handler(request).catch(fail);
    } catch (err) {
      fail(err);
      return;
    }
    this.#inFlight.add(running);
    void running.finally(() => this.#inFlight.delete(running));
  }
}

/** The calls of aedes' persistence that touch a client's queue of outgoing QoS 1/2 messages (aedes 1.x awaits them). */
interface OutgoingQueues {
  outgoingEnqueue(sub: { clientId: string }, ...rest: unknown[]): unknown;
  outgoingEnqueueCombi(subs: ReadonlyArray<{ clientId: string }>, ...rest: unknown[]): unknown;
  outgoingUpdate(client: { id: string }, ...rest: unknown[]): unknown;
  outgoingClearMessageId(
    client: { id: string },
    packet: unknown,
    cb?: (err: null, packet?: unknown) => void,
  ): unknown;
}

/**
 * aedes' in-memory persistence (aedes-persistence 11) answers every PUBACK with `outgoingClearMessageId`, which
 * creates an empty queue for the client id when it has none and never deletes it — also for clean sessions, whose
 * queue is never used. Every device that ever acknowledged a reply would leave an entry (~100 B) behind for the life
 * of the process (measured by bench scenario 4). Only a client that ever had a message queued or updated (a
 * persistent session) can have anything to clear, so for every other client the call is answered as the persistence
 * would answer it (nothing found) without creating the entry.
 */
function forgetCleanSessionQueues(broker: Aedes): void {
  const persistence = (broker as unknown as { persistence: OutgoingQueues }).persistence;
  const queued = new Set<string>();
  const enqueue = persistence.outgoingEnqueue.bind(persistence);
  const enqueueCombi = persistence.outgoingEnqueueCombi.bind(persistence);
  const update = persistence.outgoingUpdate.bind(persistence);
  const clear = persistence.outgoingClearMessageId.bind(persistence);
  persistence.outgoingEnqueue = (sub, ...rest) => {
    queued.add(sub.clientId);
    return enqueue(sub, ...rest);
  };
  persistence.outgoingEnqueueCombi = (subs, ...rest) => {
    for (const sub of subs) queued.add(sub.clientId);
    return enqueueCombi(subs, ...rest);
  };
  persistence.outgoingUpdate = (client, ...rest) => {
    queued.add(client.id);
    return update(client, ...rest);
  };
  persistence.outgoingClearMessageId = (client, packet, cb) => {
    if (queued.has(client.id)) return cb === undefined ? clear(client, packet) : clear(client, packet, cb);
    if (cb === undefined) return Promise.resolve(undefined);
    process.nextTick(cb, null, undefined);
    return undefined;
  };
}

function remoteAddress(client: Client): string | undefined {
  const conn = client.conn as Partial<Socket>;
  return typeof conn.remoteAddress === 'string' ? conn.remoteAddress : undefined;
}

type FrameProblem = 'packet_too_large' | 'malformed_length';

/**
 * Watches the MQTT framing of everything aedes reads from `socket` (aedes pulls with `socket.read()`): each packet's
 * fixed header and Remaining Length are decoded, bodies are skipped by count without copying. A Remaining Length
 * above `maxBytes`, or one longer than four bytes (MQTT 3.1.1 §2.2.3), destroys the socket before aedes' parser sees
 * the bytes, so a huge announced packet is never buffered.
 */
function guardFrames(socket: Socket, maxBytes: number, onProblem: (problem: FrameProblem) => void): void {
  let state: 'header' | 'length' | 'body' = 'header';
  let length = 0;
  let multiplier = 1;
  let lengthBytes = 0;
  let remaining = 0;

  const check = (chunk: Buffer): FrameProblem | undefined => {
    let i = 0;
    while (i < chunk.length) {
      if (state === 'header') {
        i += 1;
        state = 'length';
        length = 0;
        multiplier = 1;
        lengthBytes = 0;
      } else if (state === 'length') {
        const byte = chunk[i]!;
        i += 1;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        lengthBytes += 1;
        if (length > maxBytes) return 'packet_too_large';
        if ((byte & 0x80) !== 0) {
          if (lengthBytes === 4) return 'malformed_length';
        } else {
          remaining = length;
          state = remaining > 0 ? 'body' : 'header';
        }
      } else {
        const take = Math.min(remaining, chunk.length - i);
        i += take;
        remaining -= take;
        if (remaining === 0) state = 'header';
      }
    }
    return undefined;
  };

  const read = socket.read.bind(socket);
  let refused = false;
  socket.read = (size?: number): unknown => {
    if (refused) return null;
    const chunk: unknown = read(size);
    if (!Buffer.isBuffer(chunk)) return chunk;
    const problem = check(chunk);
    if (problem === undefined) return chunk;
    refused = true;
    onProblem(problem);
    socket.destroy();
    return null;
  };
}

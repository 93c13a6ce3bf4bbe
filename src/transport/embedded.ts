/**
 * Embedded broker mode (no `DEVICEGATE_MQTT_URL`): the gateway runs an aedes broker in its own process. Devices
 * connect to it; the gateway reads their requests from aedes' `published` hook (no MQTT client of its own) and
 * publishes replies straight into the broker.
 *
 * The broker's hooks (authenticate, authorizePublish, authorizeSubscribe, authorizeForward) apply the rules of
 * `acl.ts` and only translate its decisions into aedes' answers: CONNACK return codes, a closed connection for a
 * refused publish, SUBACK 0x80 for a refused subscription, no delivery for a refused forward. They fail closed.
 *
 * A frame guard (`frame-guard.ts`) on each socket closes it when an MQTT packet announces more than
 * {@link MAX_PACKET_BYTES}, before the bytes are buffered or parsed; payloads below it on a device's own topic reach
 * the handler, which answers `invalid_request` when they exceed the 4 KiB of the contract.
 *
 * Requests go through a {@link RequestDispatcher} bounded at {@link MAX_IN_FLIGHT}. aedes sends a request's PUBACK
 * before the `published` hook, so the bound cannot hold the acknowledgement back as in external mode; instead the hook
 * completes only once the request has a slot, and aedes reads nothing more from that device's connection meanwhile.
 *
 * Sessions live in {@link DevicePersistence}, aedes' in-memory persistence without its per-client leak and with a cap
 * on unacknowledged messages per session (a device that never acknowledges is disconnected at the cap).
 *
 * Devices reach it on up to three listeners, all with the same hooks: the plain TCP listener, the TLS listener
 * (`tls` option: TLS 1.2+, client certificates verified against the configured CA, `./tls.ts`; `reloadTls()`
 * swaps the certificate for new connections while open ones stay), and WebSocket streams the HTTP server hands to
 * {@link EmbeddedBroker.handleWebSocket} (`GET /mqtt`). With `deviceAuth: 'cert'`, only a verified certificate's CN
 * identifies a device, so the plain and WebSocket listeners refuse every device.
 *
 * aedes 1.x speaks MQTT 3.1 and 3.1.1 only: an MQTT 5 CONNECT gets CONNACK return code 1 ("unacceptable protocol
 * version").
 */
import type { IncomingMessage } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { type Server as TlsServer, createServer as createTlsServer } from 'node:tls';
import { Aedes, type AedesPublishPacket, type Client, type ConnectPacket } from 'aedes';
import type { Logger } from 'pino';
import type { MqttTls } from '../config/index.ts';
import { readTlsFiles } from '../config/tls-files.ts';
import { UnavailableError } from '../core/errors.ts';
import { type DeviceReply, ID_PATTERN } from '../core/protocol.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type PortFallback, listenWithFallback } from '../net/listen.ts';
import {
  type AclPolicy,
  CONNACK_RETURN_CODE,
  type ConnectDecision,
  decideConnect,
  decideForward,
  decidePublish,
  decideSubscribe,
} from './acl.ts';
import { ConnectLimiter } from './connect-limit.ts';
import { MAX_IN_FLIGHT, RequestDispatcher } from './dispatcher.ts';
import { guardFrames } from './frame-guard.ts';
import { overLimit } from './packet-size.ts';
import { DevicePersistence } from './persistence.ts';
import { certificateId, tlsServerOptions } from './tls.ts';
import type {
  DeviceRequestHandler,
  DeviceTransport,
  IncomingRequest,
  Oversize,
  RequestLoad,
  TransportStatus,
} from './types.ts';

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

/** CONNACK return code 3 (MQTT 3.1.1 §3.2.2.3), for a CONNECT over the flapping limit. */
const SERVER_UNAVAILABLE = 3;

/** Topic levels a client may use; the contract needs the prefix's levels plus three. aedes' ceiling is 100. */
const MIN_TOPIC_LEVELS = 16;

/** `topics`, `deviceAuth` and `deviceKey` are the access rules' inputs ({@link AclPolicy}). */
export interface EmbeddedBrokerOptions extends AclPolicy {
  /** interface to listen on */
  host: string;
  /** TCP port; 0 picks a free one (read it from {@link EmbeddedBroker.port} after `start()`) */
  port: number;
  /** largest PUBLISH (bytes) sent to a device: replies over it are `oversize` (./packet-size.ts); default no limit */
  maxPacketSize?: number;
  /** the demo only: when `port` is taken, try the following ports (and say which one was used) */
  portFallback?: PortFallback | undefined;
  /** the TLS listener (its files are read at start and by `reloadTls()`); port 0 picks a free one */
  tls?: MqttTls | undefined;
  log: Logger;
  metrics: Metrics;
  /** Whether a device is revoked: its CONNECT is refused (not authorized). A failed check refuses it too. */
  isRevoked?: ((deviceId: string) => Promise<boolean>) | undefined;
}

export class EmbeddedBroker implements DeviceTransport {
  readonly #o: EmbeddedBrokerOptions;
  readonly #maxTopicLevels: number;
  #broker: Aedes | undefined;
  #server: Server | undefined;
  #tlsServer: TlsServer | undefined;
  #serversClosed: Array<Promise<void>> = [];
  #port: number;
  #tlsPort: number | undefined;
  #dispatcher: RequestDispatcher | undefined;
  #closing = false;
  #closed: Promise<void> | undefined;
  readonly #sockets = new Set<Duplex>();
  /** connect flapping: attempts per client id and per remote address (./connect-limit.ts) */
  readonly #connects = new ConnectLimiter();
  /** the Will of each CONNECT, seen in `preConnect` and judged in `authenticate` (which is not given the packet) */
  readonly #wills = new WeakMap<Client, NonNullable<ConnectPacket['will']>>();
  /** the connected clients by device id, for {@link disconnect} (aedes' own map is not in its typings) */
  readonly #clients = new Map<string, Client>();

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

  /** The TLS listener's bound port once `start()` has resolved; undefined without TLS. */
  get tlsPort(): number | undefined {
    return this.#tlsPort;
  }

  /** Starts aedes and listens; resolves once devices can connect. Rejects (and frees what it opened) if the port is taken. */
  async start(handler: DeviceRequestHandler): Promise<void> {
    if (this.#broker !== undefined) throw new Error('EmbeddedBroker already started');
    this.#dispatcher = new RequestDispatcher(handler, { limit: MAX_IN_FLIGHT, log: this.#o.log });
    const broker = await this.#createBroker();
    this.#broker = broker;
    await this.#listen(broker);
    if (this.#o.tls !== undefined) await this.#listenTls(broker, this.#o.tls);
    this.#o.metrics.gauge(
      'devicegate_mqtt_clients',
      'Devices connected to the embedded broker.',
      () => this.#broker?.connectedClients ?? 0,
    );
    this.#o.metrics.gauge(
      'devicegate_request_queue_length',
      'Device requests waiting for a processing slot.',
      () => this.#dispatcher?.waiting ?? 0,
    );
    this.#o.log.info(
      {
        host: this.#o.host,
        port: this.#port,
        ...(this.#o.tls !== undefined && { tlsHost: this.#o.tls.host, tlsPort: this.#tlsPort }),
        deviceAuth: this.#o.deviceAuth,
      },
      'embedded MQTT broker listening',
    );
  }

  /** aedes with the limits, the session store and the hooks that apply `acl.ts`; its events are logged. */
  async #createBroker(): Promise<Aedes> {
    const broker = await Aedes.createBroker({
      ...AEDES_LIMITS,
      maxTopicLevels: this.#maxTopicLevels,
      persistence: new DevicePersistence({
        onDrop: (clientId) => {
          this.#o.metrics.inc('devicegate_mqtt_unacked_dropped_total');
          this.#o.log.debug({ deviceId: clientId }, 'reply not stored: too many unacknowledged');
        },
      }),
      preConnect: (client, packet, done) => {
        if (packet.will !== undefined && packet.will !== null) this.#wills.set(client, packet.will);
        done(null, true);
      },
      authenticate: (client, username, password, done) => {
        const tooMany = () => {
          this.#o.metrics.inc('devicegate_mqtt_refused_connects_total', { reason: 'too_many_connects' });
          done(Object.assign(new Error('too many connects'), { returnCode: SERVER_UNAVAILABLE }), false);
        };
        if (!this.#connects.allowAddress(remoteAddress(client), Date.now())) return tooMany();
        const decision = this.#authenticate(client, username, password);
        if (!decision.allow) {
          const returnCode = CONNACK_RETURN_CODE[decision.reason];
          return done(Object.assign(new Error(decision.reason), { returnCode }), false);
        }
        // only now: a CONNECT with bad credentials must not spend the budget of the device it names
        if (!this.#connects.allowDevice(client.id, Date.now())) return tooMany();
        void this.#refuseRevoked(client).then((code) =>
          code === undefined
            ? done(null, true)
            : done(Object.assign(new Error('revoked'), { returnCode: code }), false),
        );
      },
      authorizePublish: (client, packet, done) => {
        const decision = decidePublish(this.#o, client?.id, packet);
        if (decision.allow) return done(null);
        this.#deny('publish', decision.reason, client?.id, packet.topic);
        done(new Error(`publish refused: ${decision.reason}`));
      },
      authorizeSubscribe: (client, sub, done) => {
        const decision = decideSubscribe(this.#o, client.id, sub.topic);
        if (decision.allow) return done(null, sub);
        this.#deny('subscribe', decision.reason, client.id, sub.topic);
        // a null subscription is aedes' way to answer SUBACK 0x80 (failure) and keep the connection
        done(null, null);
      },
      authorizeForward: (client, packet) => {
        const decision = decideForward(this.#o, client.id, packet.topic);
        if (decision.allow) return packet;
        this.#deny('forward', decision.reason, client.id, packet.topic);
        return null;
      },
      published: (packet, client: Client | null, done) => {
        // broker-originated publishes (replies, $SYS) have no client and are never requests; a request completes
        // the hook only once it has a processing slot
        if (client !== null && !this.#closing && this.#onPublished(packet, client, () => done(null))) return;
        done(null);
      },
    });
    // aedes emits 'error' for persistence failures; its typings omit the event, an unhandled one would crash
    (broker as EventEmitter).on('error', (err: Error) => this.#o.log.error({ err }, 'embedded broker error'));
    broker.on('clientReady', (client) => {
      this.#clients.set(client.id, client);
      this.#o.log.debug({ deviceId: client.id, remoteAddress: remoteAddress(client) }, 'device connected');
    });
    broker.on('clientDisconnect', (client) => {
      if (this.#clients.get(client.id) === client) this.#clients.delete(client.id);
      this.#o.log.debug({ deviceId: client.id }, 'device disconnected');
    });
    broker.on('clientError', (client, err) =>
      this.#o.log.debug({ deviceId: client.id, err }, 'device connection closed on error'),
    );
    broker.on('connectionError', (_client, err) =>
      this.#o.log.debug({ err }, 'connection closed before CONNECT completed'),
    );
    return broker;
  }

  /** Listens for devices on plain TCP; on failure closes `broker` and rejects with `UnavailableError`. */
  async #listen(broker: Aedes): Promise<void> {
    const server = createServer({ noDelay: true }, (socket) => this.#accept(broker, socket));
    this.#server = server;
    this.#port = await this.#bind(broker, server, this.#o.host, this.#o.port, this.#o.portFallback);
  }

  /** Listens for devices over TLS (the files are read now); on failure closes what started and rejects. */
  async #listenTls(broker: Aedes, tls: MqttTls): Promise<void> {
    const server = createTlsServer(tlsServerOptions(readTlsFiles(tls)), (socket) => {
      socket.setNoDelay(true);
      this.#accept(broker, socket);
    });
    // a failed handshake (no certificate, another CA's, TLS 1.1) never reaches aedes: counted, not logged per client
    server.on('tlsClientError', (err) => {
      this.#o.metrics.inc('devicegate_mqtt_refused_connects_total', { reason: 'tls_handshake' });
      this.#o.log.debug({ err }, 'TLS handshake failed');
    });
    this.#tlsServer = server;
    this.#tlsPort = await this.#bind(broker, server, tls.host, tls.port, undefined);
  }

  /** Binds `server`; on failure closes every listener and `broker` and rejects with `UnavailableError`. */
  async #bind(
    broker: Aedes,
    server: Server,
    host: string,
    port: number,
    fallback: PortFallback | undefined,
  ): Promise<number> {
    let bound: number;
    try {
      bound = await listenWithFallback(server, host, port, fallback);
    } catch (err) {
      this.#server?.close();
      this.#server = undefined;
      this.#tlsServer = undefined;
      await new Promise<void>((resolve) => broker.close(resolve));
      this.#broker = undefined;
      throw new UnavailableError('broker', `embedded broker cannot listen on ${host}:${port}`, {
        cause: err,
      });
    }
    server.on('error', (err) => this.#o.log.error({ err }, 'embedded broker listener error'));
    this.#serversClosed.push(new Promise((resolve) => server.once('close', resolve)));
    return bound;
  }

  /**
   * Reads the TLS files again and serves them to new connections; connections already open keep theirs. When the
   * files are unusable, logs why and keeps serving the previous ones. No-op without TLS.
   */
  reloadTls(): boolean {
    const server = this.#tlsServer;
    const tls = this.#o.tls;
    if (server === undefined || tls === undefined) return false;
    try {
      server.setSecureContext(tlsServerOptions(readTlsFiles(tls)));
    } catch (err) {
      this.#o.log.error({ err }, 'TLS files not reloaded; the previous certificate stays in use');
      return false;
    }
    this.#o.log.info({ certFile: tls.certFile }, 'TLS certificate reloaded');
    return true;
  }

  /**
   * Serves one device connected over WebSocket (`GET /mqtt` on the HTTP server): `stream` carries its MQTT bytes,
   * `req` is the upgrade request (aedes keeps it as `client.req`; its socket gives the device's address).
   */
  handleWebSocket(stream: Duplex, req: IncomingMessage): void {
    const broker = this.#broker;
    if (broker === undefined || this.#closing) {
      stream.destroy();
      return;
    }
    this.#accept(broker, stream, req);
  }

  oversize(deviceId: string, reply: DeviceReply): Oversize | undefined {
    const packet = { topic: this.#o.topics.response(deviceId), payload: JSON.stringify(reply), mqtt5: false };
    return overLimit(packet, this.#o.maxPacketSize);
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

  load(): RequestLoad {
    return this.#dispatcher?.load() ?? { saturated: false, detail: 'not started' };
  }

  /** Closes the device's live connection on this broker, if it has one (a revoked device). */
  disconnect(deviceId: string): void {
    this.#clients.get(deviceId)?.close();
  }

  /**
   * The CONNACK return code that refuses a revoked device (5, not authorized), or `undefined` to accept it. Fails
   * closed: when the revoked set cannot be read, 3 (server unavailable).
   */
  async #refuseRevoked(client: Client): Promise<3 | 5 | undefined> {
    const isRevoked = this.#o.isRevoked;
    if (isRevoked === undefined) return undefined;
    try {
      if (!(await isRevoked(client.id))) return undefined;
    } catch (err) {
      this.#o.log.warn({ deviceId: client.id, err }, 'device connection refused: revocation check failed');
      return 3;
    }
    this.#o.metrics.inc('devicegate_mqtt_refused_connects_total', { reason: 'revoked' });
    this.#o.log.info({ deviceId: client.id }, 'device connection refused: the device is revoked');
    return 5;
  }

  status(): TransportStatus {
    const listening = this.#server?.listening === true && !this.#closing;
    const clients = this.#broker?.connectedClients ?? 0;
    const tls = this.#tlsPort === undefined ? '' : ` and TLS ${this.#o.tls?.host}:${this.#tlsPort}`;
    return {
      connected: listening,
      detail: `embedded aedes on ${this.#o.host}:${this.#port}${tls}, ${clients} clients`,
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
    this.#tlsServer?.close();
    await this.#dispatcher?.drain();
    const broker = this.#broker;
    if (broker !== undefined) await new Promise<void>((resolve) => broker.close(resolve));
    // sockets that never completed CONNECT are not aedes clients; close them too so the listener can finish
    for (const socket of this.#sockets) socket.destroy();
    await Promise.all(this.#serversClosed);
    this.#o.log.info('embedded MQTT broker closed');
  }

  #accept(broker: Aedes, socket: Duplex, req?: IncomingMessage): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    guardFrames(socket, MAX_PACKET_BYTES, (reason) => {
      this.#o.metrics.inc('devicegate_mqtt_dropped_connections_total', { reason });
      this.#o.log.debug({ reason }, 'connection closed: bad MQTT frame');
    });
    broker.handle(socket, req);
  }

  /** Whether this CONNECT is accepted (`acl.ts`). Logs and counts refusals (never the password). */
  #authenticate(client: Client, username: string | undefined, password: Buffer | undefined): ConnectDecision {
    const will = this.#wills.get(client);
    this.#wills.delete(client);
    const decision = decideConnect(this.#o, {
      clientId: client.id,
      username,
      password,
      certificateId: certificateId(client.conn),
      will,
    });
    if (!decision.allow) {
      this.#o.metrics.inc('devicegate_mqtt_refused_connects_total', { reason: decision.reason });
      this.#o.log.debug(
        {
          deviceId: username?.slice(0, 64),
          clientId: client.id?.slice(0, 64),
          reason: decision.reason,
          remoteAddress: remoteAddress(client),
        },
        'device connection refused',
      );
    } else if (decision.previousKey === true) {
      // tells the operator which devices still hold the old key: the rotation is complete once none does
      this.#o.metrics.inc('devicegate_previous_key_connects_total');
      this.#o.log.info({ deviceId: client.id }, 'device connected with the previous fleet key');
    }
    return decision;
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

  /**
   * Hands a device's publish on a request topic to the dispatcher; `ack` is called once it has a processing slot.
   * Returns `false` (and does not call `ack`) when the publish is not a request to handle.
   */
  #onPublished(packet: AedesPublishPacket, client: Client, ack: () => void): boolean {
    const dispatcher = this.#dispatcher;
    const parsed = this.#o.topics.parseRequest(packet.topic);
    if (dispatcher === undefined || parsed === undefined) return false;
    // authorizePublish already bound the topic to the client; check again and drop on any doubt
    if (parsed.deviceId !== client.id) {
      this.#deny('publish', 'identity_mismatch', client.id, packet.topic);
      return false;
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
    dispatcher.dispatch(request, ack);
    return true;
  }
}

/** The device's address: its TCP or TLS socket's, or (WebSocket) that of the upgrade request's socket. */
function remoteAddress(client: Client): string | undefined {
  const conn = client.conn as Partial<Socket>;
  if (typeof conn.remoteAddress === 'string') return conn.remoteAddress;
  return client.req?.socket.remoteAddress;
}

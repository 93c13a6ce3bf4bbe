/**
 * External broker mode (`DEVICEGATE_MQTT_URL`): the gateway is an MQTT client of the operator's broker (Mosquitto,
 * EMQX, HiveMQ) with its own credentials. Device requests arrive through the shared subscription
 * `$share/{group}/{prefix}/+/req/+`, so N gateway instances split the work; replies go to each device's `res`.
 *
 * Identity: the broker's ACL binds `{deviceId}` in the topic to the authenticated username (see deploy/mosquitto);
 * the gateway trusts the topic's device id and nothing in the payload.
 *
 * Share group: every instance must use the same group name (the gateway derives it from DEVICEGATE_SECRET). It is
 * not a fixed, documented name because Mosquitto's `acl_file` grants every SUBSCRIBE and checks read access only at
 * delivery: a device that joins the gateways' group gets its share of every device's requests assigned to it, and
 * Mosquitto then drops them instead of handing them to a gateway. A group name a device cannot know keeps devices
 * out of the group. Brokers that authorize SUBSCRIBE (EMQX, HiveMQ, Mosquitto's dynamic security) refuse it anyway.
 *
 * Session: clean (no persistent session). A persistent session would outlive a dead instance, and Mosquitto keeps
 * assigning that session its share of the group's requests, queued for an instance that may never come back. With a
 * clean session, an instance's membership ends with its connection and the others take all requests.
 *
 * Brokers without shared subscriptions (NATS, RabbitMQ, a standalone aedes) grant `$share/…` and deliver nothing
 * through it: `shared: false` subscribes to the plain filter instead (one instance only), and a delivery self-check
 * after every subscribe (./self-check.ts) keeps the gateway from reporting "ready" while no request can reach it.
 *
 * Delivery: mqtt.js reads inbound packets one at a time — the next one, the PUBACKs of the gateway's own replies
 * among them, is not processed until `handleMessage` calls back. So every request is acknowledged at once and put in a
 * bounded queue that is fair per device (./fair-queue.ts, through the {@link RequestDispatcher}); a request over its
 * device's share or past the queue's capacity is dropped and counted (`devicegate_requests_dropped_total`), never
 * waited for. A crash loses the requests queued and in flight — devices repeat them with the same `rid`, which is
 * idempotent. A request that arrives with the retain flag is a stored copy replayed by the broker, not a live
 * request: it is dropped. Replies are published QoS 1 and resolve on PUBACK, or fail after
 * {@link PUBLISH_DEADLINE_MS}; while disconnected, publishing fails at once (the scheduler re-delivers results later,
 * and devices can ask with `req/status`). A full queue makes `/readyz` not ready.
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { systemTimers } from '../core/clock.ts';
import { UnavailableError } from '../core/errors.ts';
import type { DeviceReply } from '../core/protocol.ts';
import type { Metrics } from '../observability/metrics.ts';
import { redactUrl } from '../observability/redact.ts';
import { withDeadline } from './deadline.ts';
import { MAX_IN_FLIGHT, RequestDispatcher } from './dispatcher.ts';
import { overLimit } from './packet-size.ts';
import { DeliverySelfCheck, SELF_CHECK_TIMEOUT_MS, isCanary } from './self-check.ts';
import type { Topics } from './topics.ts';
import type {
  DeviceRequestHandler,
  DeviceTransport,
  IncomingRequest,
  Oversize,
  ReplyRoute,
  RequestLoad,
  TransportStatus,
} from './types.ts';

/** The share group when none is given (tests, a single instance). */
export const SHARE_GROUP = 'devicegate';
const BACKOFF_MIN_MS = 500;
/** DEVICEGATE_MQTT_KEEPALIVE's default (s); see docs/brokers.md for why it is not shorter. */
export const DEFAULT_KEEPALIVE_S = 30;
const BACKOFF_MAX_MS = 30_000;
/** Longest a reply's publish waits for its PUBACK before the handler gives up on it. */
export const PUBLISH_DEADLINE_MS = 10_000;
/** Requests waiting for a processing slot: at most this many over all devices, and this many per device. */
export const QUEUE_LIMITS = { capacity: 4096, perDevice: 16 } as const;

export interface ExternalBrokerOptions {
  url: string;
  username?: string;
  password?: string;
  /** Unique per instance (two clients with one id take each other's connection over). */
  clientId?: string;
  /**
   * The shared-subscription group (default {@link SHARE_GROUP}); the same on every instance, and best unknown to
   * devices (see the module comment).
   */
  shareGroup?: string;
  /**
   * `false`: subscribe to `{prefix}/+/req/+` without `$share` (default `true`), for brokers that grant a shared
   * subscription and never deliver through it; one instance only (src/store/redis/instances.ts enforces it on Redis).
   */
  shared?: boolean;
  topics: Topics;
  log: Logger;
  metrics: Metrics;
  /** MQTT protocol version towards the broker (default 4 = 3.1.1; 5 where the broker supports it). */
  protocolVersion?: 4 | 5;
  /** how long a reply's publish waits for its PUBACK (default {@link PUBLISH_DEADLINE_MS}) */
  publishDeadlineMs?: number;
  /**
   * MQTT keepalive (s, default {@link DEFAULT_KEEPALIVE_S}). The broker drops a silent client after 1.5 × this; until
   * then a stalled instance keeps being handed its share of the requests (answered when it resumes).
   */
  keepaliveSeconds?: number;
}

export class ExternalBroker implements DeviceTransport {
  readonly #o: ExternalBrokerOptions;
  readonly #clientId: string;
  /** the broker URL as logged and shown in `/readyz`: without its credentials */
  readonly #shownUrl: string;
  #client: MqttClient | undefined;
  /** requests processed at once are bounded at {@link MAX_IN_FLIGHT}; more wait in its fair queue, up to {@link QUEUE_LIMITS} */
  #dispatcher: RequestDispatcher | undefined;
  #connected = false;
  #closing = false;
  #attempt = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #lastError = '';
  /** the Maximum Packet Size in the broker's last CONNACK (MQTT 5), if it sent one */
  #maxPacket: number | undefined;
  /** the delivery self-check of the current subscription (./self-check.ts) and its outcome */
  #check: DeliverySelfCheck | undefined;
  #delivering: 'checking' | 'yes' | 'no' = 'checking';
  /** Settles the first `start()`: subscribed, or the first connection error. */
  #first: { resolve(): void; reject(err: Error): void } | undefined;

  constructor(options: ExternalBrokerOptions) {
    this.#o = options;
    this.#clientId = options.clientId ?? `devicegate-${randomBytes(6).toString('hex')}`;
    this.#shownUrl = redactUrl(options.url);
  }

  get subscription(): string {
    if (this.#o.shared === false) return this.#o.topics.requestFilter;
    return `$share/${this.#o.shareGroup ?? SHARE_GROUP}/${this.#o.topics.requestFilter}`;
  }

  /** The subscription as logged: without the group name. */
  get #loggedSubscription(): string {
    if (this.#o.shared === false) return this.#o.topics.requestFilter;
    return `$share/…/${this.#o.topics.requestFilter}`;
  }

  /** Connects and subscribes; resolves once the subscription is in place. Reconnects by itself afterwards. */
  async start(handler: DeviceRequestHandler): Promise<void> {
    this.#dispatcher = new RequestDispatcher(handler, {
      limit: MAX_IN_FLIGHT,
      log: this.#o.log,
      queue: QUEUE_LIMITS,
    });
    this.#o.metrics.gauge(
      'devicegate_request_queue_length',
      'Device requests waiting for a processing slot.',
      () => this.#dispatcher?.waiting ?? 0,
    );
    const client = mqtt.connect(this.#o.url, {
      clientId: this.#clientId,
      ...(this.#o.username !== undefined && { username: this.#o.username }),
      ...(this.#o.password !== undefined && { password: this.#o.password }),
      protocolVersion: this.#o.protocolVersion ?? 4,
      // see the module comment: a persistent session would keep a dead instance in the share group
      clean: true,
      keepalive: this.#o.keepaliveSeconds ?? DEFAULT_KEEPALIVE_S,
      connectTimeout: 10_000,
      // mqtt.js reconnects at a fixed period; we reconnect ourselves with backoff and jitter instead.
      reconnectPeriod: 0,
      queueQoSZero: false,
      resubscribe: false,
    });
    this.#client = client;
    client.handleMessage = (packet, done) => this.#onMessage(packet, done);
    client.on('connect', (connack) => {
      this.#attempt = 0;
      this.#maxPacket = connack.properties?.maximumPacketSize;
      const socket = client.stream as { setNoDelay?: (on: boolean) => void };
      socket.setNoDelay?.(true);
      void this.#subscribe(connack.sessionPresent);
    });
    client.on('close', () => {
      const was = this.#connected;
      this.#connected = false;
      this.#check?.cancel();
      if (was) this.#o.log.warn({ broker: this.#shownUrl }, 'broker connection lost');
      this.#scheduleReconnect();
    });
    client.on('error', (err) => {
      this.#lastError = err.message;
      this.#o.log.warn({ broker: this.#shownUrl, err }, 'broker error');
      this.#first?.reject(
        new UnavailableError('broker', `cannot connect to ${this.#shownUrl}: ${err.message}`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.#first = { resolve, reject };
    })
      .finally(() => {
        this.#first = undefined;
      })
      .catch(async (err: unknown) => {
        this.#closing = true;
        clearTimeout(this.#reconnectTimer);
        await client.endAsync(true);
        throw err;
      });
  }

  async #subscribe(sessionPresent: boolean): Promise<void> {
    const client = this.#client;
    if (client === undefined) return;
    try {
      // A clean session starts without subscriptions: subscribe on every connect.
      const granted = await client.subscribeAsync(this.subscription, { qos: 1 });
      if (granted.some((g) => g.qos > 2)) throw new Error(`the broker refused ${this.#loggedSubscription}`);
      this.#connected = true;
      this.#o.log.info(
        { broker: this.#shownUrl, sessionPresent, subscription: this.#loggedSubscription },
        'broker connected',
      );
      await this.#checkDelivery();
      this.#first?.resolve();
    } catch (err) {
      this.#lastError = err instanceof Error ? err.message : String(err);
      this.#o.log.error({ broker: this.#shownUrl, err: this.#lastError }, 'subscription failed');
      this.#first?.reject(new UnavailableError('broker', this.#lastError));
      client.stream.destroy();
    }
  }

  #scheduleReconnect(): void {
    if (this.#closing || this.#reconnectTimer !== undefined) return;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.#attempt, 10));
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2)); // "equal jitter"
    this.#attempt += 1;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (!this.#closing) this.#client?.reconnect();
    }, delay);
    this.#reconnectTimer.unref();
  }

  #onMessage(packet: IPublishPacket, done: (err?: Error) => void): void {
    const parsed = this.#o.topics.parseRequest(packet.topic);
    const dispatcher = this.#dispatcher;
    // A live publish reaches an existing subscription with retain 0 (MQTT-3.3.1-9); retain 1 is a stored copy the
    // broker replays on every (re)subscribe, not a request a device sent now.
    if (parsed === undefined || dispatcher === undefined || this.#closing || packet.retain) {
      if (packet.retain)
        this.#o.metrics.inc('devicegate_mqtt_denied_total', { op: 'publish', reason: 'retain' });
      done();
      return;
    }
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    if (isCanary(parsed.rawAction, payload)) {
      this.#check?.arrived();
      done();
      return;
    }
    const replyTo = replyRouteOf(packet);
    const request: IncomingRequest = {
      deviceId: parsed.deviceId,
      action: parsed.action,
      rawAction: parsed.rawAction,
      payload,
      ...(replyTo !== undefined && { replyTo }),
    };
    // acknowledged at once: holding `done` back would hold every later inbound packet behind this request
    done();
    const refused = dispatcher.dispatch(request);
    if (refused !== undefined) this.#o.metrics.inc('devicegate_requests_dropped_total', { reason: refused });
  }

  async publish(deviceId: string, reply: DeviceReply, route?: ReplyRoute): Promise<void> {
    const client = this.#client;
    if (client === undefined || !this.#connected) {
      throw new UnavailableError('broker', 'not connected to the broker');
    }
    const target = this.#replyTarget(deviceId, route);
    const payload = JSON.stringify(reply);
    // the broker would close the connection on it (and every retry): refuse it here instead
    const over = this.#over(target, payload);
    if (over !== undefined) throw new Error(`reply of ${over.size} bytes over the broker's ${over.limit}`);
    const published = client.publishAsync(target.topic, payload, {
      qos: 1,
      retain: false,
      ...(target.correlationData !== undefined && {
        properties: { correlationData: target.correlationData },
      }),
    });
    const ms = this.#o.publishDeadlineMs ?? PUBLISH_DEADLINE_MS;
    await withDeadline(published, ms, () => new UnavailableError('broker', `no PUBACK within ${ms} ms`));
  }

  oversize(deviceId: string, reply: DeviceReply): Oversize | undefined {
    return this.#over({ topic: this.#o.topics.response(deviceId) }, JSON.stringify(reply));
  }

  /** The PUBLISH size and the broker's limit when it is over it (./packet-size.ts). */
  #over(target: ReplyRoute, payload: string): Oversize | undefined {
    const mqtt5 = (this.#o.protocolVersion ?? 4) === 5;
    return overLimit({ ...target, payload, mqtt5 }, this.#maxPacket);
  }

  /**
   * Where a reply goes: the request's Response Topic with its Correlation Data when the topic is the device's own
   * (`Topics.isOwnReplyTopic`), else the device's `res` without either — a device cannot have the gateway publish
   * anywhere its ACL would not let it read, and never on another device's topic.
   */
  #replyTarget(deviceId: string, route: ReplyRoute | undefined): ReplyRoute {
    const own = this.#o.topics.response(deviceId);
    if (route === undefined) return { topic: own };
    if (this.#o.topics.isOwnReplyTopic(deviceId, route.topic)) return route;
    this.#o.metrics.inc('devicegate_mqtt_denied_total', { op: 'reply', reason: 'not_own_response' });
    this.#o.log.debug({ deviceId }, "response topic refused; replying on the device's res");
    return { topic: own };
  }

  /** Connected, subscribed, and the last delivery self-check passed: anything less is not ready (`/readyz` 503). */
  load(): RequestLoad {
    return this.#dispatcher?.load() ?? { saturated: false, detail: 'not started' };
  }

  status(): TransportStatus {
    if (!this.#connected) {
      const why = this.#lastError === '' ? '' : `: ${this.#lastError}`;
      return { connected: false, detail: `not connected to ${this.#shownUrl}${why}` };
    }
    const at = `connected to ${this.#shownUrl} as ${this.#clientId}`;
    if (this.#delivering === 'yes') return { connected: true, detail: at };
    if (this.#delivering === 'checking')
      return { connected: false, detail: `${at}; delivery self-check running` };
    return { connected: false, detail: `${at}; ${this.#notDelivering()}` };
  }

  /**
   * Publishes canaries on the gateway's own request topic until one comes back through the subscription (see
   * ./self-check.ts). Never throws: a failed check is logged and reported by {@link status}.
   */
  async #checkDelivery(): Promise<void> {
    const client = this.#client;
    if (client === undefined) return;
    this.#check?.cancel();
    this.#delivering = 'checking';
    const topic = this.#canaryTopic;
    const check = new DeliverySelfCheck({
      timers: systemTimers,
      publish: async (payload) => {
        await client.publishAsync(topic, payload, { qos: 1, retain: false });
      },
    });
    this.#check = check;
    const passed = await check.run();
    if (this.#check !== check || !this.#connected) return; // a newer connection runs its own check
    this.#delivering = passed ? 'yes' : 'no';
    if (passed) this.#o.log.info({ broker: this.#shownUrl, canary: topic }, 'delivery self-check passed');
    else this.#o.log.error({ broker: this.#shownUrl, canary: topic }, this.#notDelivering());
  }

  /** `{prefix}/{username}/req/selfcheck`: the device ACL's `%u` line lets the gateway's own user publish there. */
  get #canaryTopic(): string {
    return this.#o.topics.selfCheck(this.#o.username ?? this.#clientId);
  }

  /** What is wrong when no canary came back, and which setting fixes it. */
  #notDelivering(): string {
    const lost = `delivery self-check failed: no canary published on ${this.#canaryTopic} came back through ${this.#loggedSubscription} within ${SELF_CHECK_TIMEOUT_MS / 1000} s, so devices would get no reply.`;
    const acl = `let the gateway's broker user publish to ${this.#canaryTopic} and read ${this.#o.topics.requestFilter}`;
    if (this.#o.shared === false) return `${lost} Check the broker's ACL: ${acl}.`;
    return `${lost} If the broker does not deliver shared subscriptions (NATS, RabbitMQ, a standalone aedes), set DEVICEGATE_MQTT_SHARED_SUBSCRIPTION=false (one instance only); otherwise ${acl} (docs/brokers.md).`;
  }

  /** Stops taking requests (unsubscribes), waits for the ones in flight, then disconnects cleanly. */
  async close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#reconnectTimer);
    const client = this.#client;
    if (client === undefined) return;
    if (this.#connected) await client.unsubscribeAsync(this.subscription).catch(() => undefined);
    await this.#dispatcher?.drain();
    this.#connected = false;
    await client.endAsync();
  }
}

/**
 * The request's MQTT 5 Response Topic and Correlation Data (MQTT 5 §3.3.2.3.5-6), as sent; only present when the
 * gateway's own connection is MQTT 5 (the broker drops properties towards an MQTT 3.1.1 client).
 */
function replyRouteOf(packet: IPublishPacket): ReplyRoute | undefined {
  const topic = packet.properties?.responseTopic;
  if (topic === undefined) return undefined;
  const data = packet.properties?.correlationData;
  return { topic, ...(data !== undefined && { correlationData: Buffer.from(data) }) };
}

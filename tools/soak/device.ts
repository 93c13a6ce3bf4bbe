/**
 * One soak device: an mqtt.js client with a persistent session (as firmware would keep one) that runs flows back to
 * back until told to stop. Each flow: `req/authorize`, the pending reply, the person approves at the fake upstream
 * after a random delay, the token arrives, `req/ack`. A device that hears nothing for a while asks `req/status`, as
 * the contract tells devices to after a reconnect; transient errors are retried after `retry_after`.
 */
import type { MqttClient } from 'mqtt';
import { openDeviceClient } from '../../firmware-sim/connection.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';
import type { FakeUpstream } from '../../bench/fake-upstream.ts';
import type { Rng } from '../lib/rng.ts';
import type { FlowRecord, Ledger } from './ledger.ts';

const PREFIX = 'devicegate/v1';
const TRANSIENT = new Set(['slow_down', 'temporarily_unavailable']);

export interface DeviceSettings {
  brokerUrl: string;
  fleetKey: string;
  approveDelayMs: { min: number; max: number };
  thinkMs: { min: number; max: number };
  /** how long a device waits in silence before it asks `req/status` */
  quietMs: number;
  /** a flow without a final answer by then is given up (judged lost) */
  flowDeadlineMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SoakDevice {
  readonly #client: MqttClient;
  readonly #resTopic: string;
  #waiter: ((r: DeviceReply) => void) | undefined;
  #current: string | undefined;
  #flows = 0;

  readonly id: string;
  readonly #s: DeviceSettings;
  readonly #rng: Rng;
  readonly #ledger: Ledger;
  readonly #upstream: FakeUpstream;

  constructor(id: string, s: DeviceSettings, rng: Rng, ledger: Ledger, upstream: FakeUpstream) {
    this.id = id;
    this.#s = s;
    this.#rng = rng;
    this.#ledger = ledger;
    this.#upstream = upstream;
    this.#resTopic = `${PREFIX}/${id}/res`;
    this.#client = openDeviceClient({
      url: s.brokerUrl,
      deviceId: id,
      fleetKey: s.fleetKey,
      clean: false,
      keepalive: 10,
      reconnectPeriod: 500,
      connectTimeout: 5000,
    });
    this.#client.on('error', () => {});
    this.#client.on('message', (topic, payload, packet) => this.#onMessage(topic, payload, packet.dup));
  }

  /** Connects and subscribes to its own `res`. */
  async open(): Promise<void> {
    await new Promise<void>((resolve) => this.#client.once('connect', () => resolve()));
    await this.#client.subscribeAsync(this.#resTopic, { qos: 1 });
  }

  /** Runs flows until `running()` turns false, then finishes the one in progress. */
  async run(running: () => boolean): Promise<void> {
    while (running()) {
      await this.#flow(this.#ledger.start(this.id, `f${++this.#flows}`));
      await sleep(this.#rng.int(this.#s.thinkMs.min, this.#s.thinkMs.max));
    }
  }

  async close(): Promise<void> {
    await this.#client.endAsync(true);
  }

  #onMessage(topic: string, payload: Buffer, dup: boolean): void {
    if (topic !== this.#resTopic) {
      this.#ledger.strayTopics += 1;
      return;
    }
    let reply: DeviceReply;
    try {
      reply = JSON.parse(payload.toString('utf8')) as DeviceReply;
    } catch {
      return;
    }
    this.#ledger.receive(this.id, reply, dup, (code) => this.#upstream.issuedToken(code));
    if (reply.rid !== undefined && reply.rid === this.#current) this.#waiter?.(reply);
  }

  /** The next reply for the current flow, or undefined after `ms` of silence. */
  #next(ms: number): Promise<DeviceReply | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(undefined), ms);
      const finish = (r: DeviceReply | undefined) => {
        clearTimeout(timer);
        this.#waiter = undefined;
        resolve(r);
      };
      this.#waiter = finish;
    });
  }

  #send(action: string, rid: string, f?: FlowRecord): void {
    if (action === 'authorize' && f !== undefined) f.authorizeAt = Date.now();
    // QoS 1 into mqtt.js's queue: while the broker is away it is sent on reconnect
    this.#client.publish(`${PREFIX}/${this.id}/req/${action}`, JSON.stringify({ rid }), { qos: 1 }, () => {});
  }

  async #flow(f: FlowRecord): Promise<void> {
    this.#current = f.rid;
    const deadline = f.startedAt + this.#s.flowDeadlineMs;
    this.#send('authorize', f.rid, f);
    let approving = false;
    while (Date.now() < deadline) {
      const r = await this.#next(Math.min(this.#s.quietMs, Math.max(1, deadline - Date.now())));
      if (r === undefined) {
        if (f.userCode !== undefined) f.statusAsks += 1;
        this.#send('status', f.rid);
      } else if (r.status === 'pending') {
        if (!approving) this.#approveLater(f, r.user_code);
        approving = true;
      } else if (r.status === 'authorized') {
        f.outcome = 'authorized';
        this.#send('ack', f.rid);
        break;
      } else if (TRANSIENT.has(r.error)) {
        await sleep((r.retry_after ?? 1) * 1000);
        this.#send(f.userCode === undefined ? 'authorize' : 'status', f.rid, f);
      } else {
        // before any pending, "expired_token" means the gateway never heard of the request
        f.outcome = f.userCode === undefined && r.error === 'expired_token' ? 'dropped' : 'error';
        f.error = r.error;
        break;
      }
    }
    if (f.outcome === 'open') f.outcome = 'timeout';
    this.#current = undefined;
  }

  #approveLater(f: FlowRecord, userCode: string): void {
    setTimeout(
      () => {
        this.#upstream.approve(userCode);
        f.approvedAt = Date.now();
      },
      this.#rng.int(this.#s.approveDelayMs.min, this.#s.approveDelayMs.max),
    );
  }
}

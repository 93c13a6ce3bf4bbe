/**
 * One interactive device (`npm run sim -- --id tv-1`): connect, ask for authorization, show the code and the QR code,
 * wait for the gateway to push the result, acknowledge the token. Ctrl-C or `--timeout` cancels the request so it
 * does not hold one of the device's live-flow slots.
 */
import { systemClock, systemTimers, type TimerHandle } from '../src/core/clock.ts';
import { type DeviceArgs, EXIT } from './args.ts';
import type { CliIo } from './cli.ts';
import { SimError } from './connection.ts';
import { SimDevice } from './device.ts';
import { type SimReply, randomRid } from './replies.ts';
import { authorizedLines, keyHint, minutes, pendingLines, redact, whereFrom } from './render.ts';

/** Seconds of grace after `expires_in` before the device gives up on hearing `expired_token` from the gateway. */
const EXPIRY_GRACE_SECONDS = 15;

type Say = (line?: string) => void;

/** Resolves with `p`, or with `undefined` after `ms` (for best-effort goodbyes that must not hang the exit). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: TimerHandle | undefined;
  return Promise.race([
    p,
    new Promise<undefined>((resolve) => {
      timer = systemTimers.setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => systemTimers.clear(timer));
}

/**
 * One request's life on the screen: the first outcome wins (authorized, error, expiry, timeout, Ctrl-C); replies
 * that arrive later (a result sent again after a reconnect) are ignored.
 */
class Session {
  readonly rid: string;
  /** the gateway gave a final answer (authorized or error): nothing left to cancel */
  answered = false;
  settled = false;
  readonly finished: Promise<number>;
  #resolve!: (code: number) => void;
  #shownCode: string | undefined;
  #expiryTimer: TimerHandle | undefined;
  #timeoutTimer: TimerHandle | undefined;
  #answerTimer: TimerHandle | undefined;

  readonly args: DeviceArgs;
  readonly io: CliIo;
  readonly device: SimDevice;
  readonly say: Say;

  constructor(args: DeviceArgs, io: CliIo, device: SimDevice, say: Say) {
    this.args = args;
    this.io = io;
    this.device = device;
    this.say = say;
    this.rid = args.rid ?? randomRid();
    this.finished = new Promise<number>((resolve) => {
      this.#resolve = resolve;
    });
  }

  finish(code: number): void {
    if (this.settled) return;
    this.settled = true;
    systemTimers.clear(this.#expiryTimer);
    systemTimers.clear(this.#timeoutTimer);
    systemTimers.clear(this.#answerTimer);
    this.#resolve(code);
  }

  startTimeout(seconds: number): void {
    this.#timeoutTimer = systemTimers.setTimeout(() => {
      this.say(`No result within ${seconds} s; giving up.`);
      this.finish(EXIT.failed);
    }, seconds * 1000);
  }

  /** Without any answer for `seconds`, nothing that serves this contract listens on the broker: say so and stop. */
  startAnswerTimeout(seconds: number): void {
    this.#answerTimer = systemTimers.setTimeout(() => {
      this.say(
        `No answer from a gateway within ${seconds} s on ${this.args.conn.url}${whereFrom(this.args.conn)}.`,
      );
      this.say(
        '  Is the gateway running (npm start), and is that its broker? (--answer-timeout sets the wait)',
      );
      this.finish(EXIT.failed);
    }, seconds * 1000);
  }

  onReply(r: SimReply): void {
    // after the final answer, the same result sent again (persistent session and req/status after a reconnect) is
    // not news: the ack may still be on its way
    if (this.settled || this.answered) return;
    // a persistent session may hand over replies to an earlier run's requests: not ours, skip them
    if (r.rid !== undefined && r.rid !== this.rid) return;
    systemTimers.clear(this.#answerTimer);
    if (this.args.json) this.io.stdout.write(`${JSON.stringify(redact(r))}\n`);
    if (r.status !== 'pending') this.answered = true;
    switch (r.status) {
      case 'pending':
        this.#onPending(r);
        return;
      case 'authorized':
        void this.#onAuthorized(r);
        return;
      case 'error':
        this.say();
        this.say(`Authorization failed: ${r.error}`);
        this.say(`  ${r.error_description}`);
        if (r.retry_after !== undefined) this.say(`  (the gateway says to retry after ${r.retry_after} s)`);
        this.finish(EXIT.failed);
        return;
    }
  }

  onError(e: SimError): void {
    switch (e.code) {
      case 'bad_reply':
        this.say(`(ignored ${e.message})`);
        return;
      case 'decrypt_failed':
        this.say(`The token could not be decrypted: ${e.message}`);
        this.finish(EXIT.failed);
        return;
      default:
        if (!e.code.startsWith('refused')) {
          this.say(`(${e.message})`);
          return;
        }
        // the broker refused the reconnect: mqtt.js stops retrying, so this run cannot finish
        this.say(`Connection refused: ${e.message}`);
        this.say(`  (used ${keyHint(this.args.conn)})`);
        this.finish(EXIT.failed);
    }
  }

  #onPending(r: Extract<SimReply, { status: 'pending' }>): void {
    systemTimers.clear(this.#expiryTimer);
    this.#expiryTimer = systemTimers.setTimeout(
      () => {
        this.say('The code expired and the gateway sent no answer. Run the simulator again for a new code.');
        this.finish(EXIT.failed);
      },
      (r.expires_in + EXPIRY_GRACE_SECONDS) * 1000,
    );
    if (this.#shownCode === r.user_code) {
      this.say(`Still waiting for approval (code ${r.user_code}, expires in ${minutes(r.expires_in)}).`);
      return;
    }
    this.#shownCode = r.user_code;
    const bold = this.io.stdout.isTTY === true && this.io.env['NO_COLOR'] === undefined && !this.args.json;
    for (const line of pendingLines(r, bold)) this.say(line);
  }

  async #onAuthorized(r: Extract<SimReply, { status: 'authorized' }>): Promise<void> {
    for (const line of authorizedLines(r, systemClock.now())) this.say(line);
    try {
      await this.device.ack(this.rid);
    } catch {
      this.say('  (the acknowledgement could not be sent; the gateway forgets the token when the flow ends)');
    }
    this.finish(EXIT.ok);
  }
}

/** Prints what is about to happen and connects; `undefined` (after saying why) when the broker cannot be used. */
async function connectDevice(args: DeviceArgs, say: Say): Promise<SimDevice | undefined> {
  const { conn } = args;
  say('devicegate device simulator');
  say(
    `  device   ${args.deviceId}: ${args.device.name} (${args.device.model}, firmware ${args.device.firmware})`,
  );
  if (conn.staleDemoFile !== undefined) {
    const { file, pid } = conn.staleDemoFile;
    say(`  (ignored ${file}: the demo gateway that wrote it, pid ${pid}, is no longer running)`);
  }
  say(`  broker   ${conn.url}${whereFrom(conn)}`);
  if (args.encrypt) say('  tokens   encrypted to this device (JWE, ECDH-ES P-256)');
  const device = new SimDevice({
    url: conn.url,
    deviceId: args.deviceId,
    fleetKey: conn.fleetKey,
    tls: conn.tls,
    topicPrefix: conn.topicPrefix,
    encrypt: args.encrypt,
    reconnectPeriod: 1000,
  });
  try {
    await device.connect();
    return device;
  } catch (err) {
    if (!(err instanceof SimError)) throw err;
    say(`Could not connect: ${err.message}`);
    if (err.code.startsWith('refused')) say(`  (used ${keyHint(conn)})`);
    return undefined;
  }
}

/** Runs one device to its outcome and resolves with the exit code (see {@link EXIT}). */
export async function runDevice(args: DeviceArgs, io: CliIo): Promise<number> {
  // With --json, stdout carries only the JSON lines; what a person reads goes to stderr.
  const human = args.json ? io.stderr : io.stdout;
  const say: Say = (line = '') => void human.write(`${line}\n`);
  const device = await connectDevice(args, say);
  if (device === undefined) return EXIT.failed;

  const s = new Session(args, io, device, say);
  device.onReply((r) => s.onReply(r));
  device.onError((e) => s.onError(e));
  device.onConnection((e) => {
    if (e === 'lost') say('connection lost, reconnecting…');
    else say('reconnected; asking the gateway for the current state');
  });
  const onAbort = () => s.finish(EXIT.interrupted);
  io.signal?.addEventListener('abort', onAbort, { once: true });
  if (io.signal?.aborted === true) onAbort(); // Ctrl-C while connecting
  if (args.timeoutSeconds !== undefined) s.startTimeout(args.timeoutSeconds);

  let requested = false;
  if (!s.settled) {
    say('connected; asking for authorization…');
    requested = true;
    s.startAnswerTimeout(args.answerTimeoutSeconds);
    // not awaited: while the broker is away the publish waits for the reconnect, and Ctrl-C must still work
    device
      .authorize({ rid: s.rid, device: args.device, ...(args.scope !== undefined && { scope: args.scope }) })
      .catch((err: unknown) => {
        if (s.settled) return;
        say(`The request could not be sent: ${err instanceof Error ? err.message : String(err)}`);
        s.finish(EXIT.failed);
      });
  }

  const code = await s.finished;
  io.signal?.removeEventListener('abort', onAbort);
  if (code === EXIT.interrupted) {
    say();
    say('Interrupted: cancelling the request…');
  }
  // Ctrl-C or giving up: abandon the flow (best effort) so it does not hold one of the device's live-flow slots
  if (code !== EXIT.ok && requested && !s.answered && device.connected) {
    await withTimeout(
      device.cancel(s.rid).catch(() => undefined),
      1000,
    );
  }
  await withTimeout(
    device.close().catch(() => undefined),
    2000,
  );
  return code;
}

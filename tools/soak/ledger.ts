/**
 * What every soak device saw, flow by flow, and the judge that turns it into the final counts. A flow is one rid of
 * one device, from its `req/authorize` to the token (acked) or to the answer that ended it.
 */
import type { DeviceReply } from '../../src/core/protocol.ts';

export type FlowOutcome =
  /** the token arrived (and was acked) */
  | 'authorized'
  /** the request vanished: no pending, and `req/status` says the gateway never knew it */
  | 'dropped'
  /** no final answer within the flow's deadline */
  | 'timeout'
  /** a final error; `error` says which */
  | 'error'
  /** still running when the run ended (judged as lost) */
  | 'open';

export interface FlowRecord {
  device: string;
  rid: string;
  startedAt: number;
  /** Date.now() of its last `req/authorize` (a re-send after a transient error moves it) */
  authorizeAt: number;
  userCode?: string;
  /** Date.now() when the fake upstream was told the person approved */
  approvedAt?: number;
  outcome: FlowOutcome;
  error?: string;
  /** authorized replies that arrived (MQTT redeliveries with the DUP flag left out) */
  authorizedReplies: number;
  /** `req/status` sent after the pending reply: each may legitimately answer with the token once more */
  statusAsks: number;
  /** a reply carried another flow's token or user code */
  crossDevice: boolean;
}

export class Ledger {
  readonly flows: FlowRecord[] = [];
  readonly #byKey = new Map<string, FlowRecord>();
  /** access token → the device it was delivered to */
  readonly #tokenOwner = new Map<string, string>();
  /** user code → the device it was shown to */
  readonly #codeOwner = new Map<string, string>();
  /** replies on a topic that is not the receiving device's own `res` */
  strayTopics = 0;

  start(device: string, rid: string): FlowRecord {
    const f: FlowRecord = {
      device,
      rid,
      startedAt: Date.now(),
      authorizeAt: Date.now(),
      outcome: 'open',
      authorizedReplies: 0,
      statusAsks: 0,
      crossDevice: false,
    };
    this.flows.push(f);
    this.#byKey.set(`${device} ${rid}`, f);
    return f;
  }

  /**
   * Books one reply a device received (on any of its flows, current or finished). `issued` is the token the upstream
   * issued for the user code of that flow, if any.
   */
  receive(
    device: string,
    reply: DeviceReply,
    dup: boolean,
    issued: (userCode: string) => string | undefined,
  ): void {
    const f = reply.rid === undefined ? undefined : this.#byKey.get(`${device} ${reply.rid}`);
    if (f === undefined) return;
    if (reply.status === 'pending') {
      if (this.#claim(this.#codeOwner, reply.user_code, device)) f.crossDevice = true;
      if (f.userCode !== undefined && f.userCode !== reply.user_code) f.crossDevice = true;
      f.userCode ??= reply.user_code;
    } else if (reply.status === 'authorized') {
      if (!dup) f.authorizedReplies += 1;
      const token = reply.access_token ?? '';
      const expected = f.userCode === undefined ? undefined : issued(f.userCode);
      if (this.#claim(this.#tokenOwner, token, device) || token !== expected) f.crossDevice = true;
    }
  }

  /** true when `value` already belongs to another device */
  #claim(owners: Map<string, string>, value: string, device: string): boolean {
    const owner = owners.get(value);
    if (owner === undefined) owners.set(value, device);
    return owner !== undefined && owner !== device;
  }
}

export interface UpstreamFlowView {
  userCode: string;
  tokenSentAt?: number;
  /** polls of the device code after its token was issued (a replay) */
  afterToken: number;
}

export interface Verdict {
  flows: number;
  authorized: number;
  lost: number;
  double: number;
  crossDevice: number;
  wrong: number;
  killWindow: number;
  replays: number;
  errorLogs: number;
  /** lost and wrong flows by how they ended (`dropped`, `timeout`, `open`, `error:<code>`) */
  why: Record<string, number>;
  /** the first few lost or wrong flows, for the log */
  failures: Array<{ device: string; rid: string; why: string; startedAt: number }>;
  pass: boolean;
}

/**
 * Judges the run. A flow whose token the upstream issued within `windowMs` of a SIGKILL and that then ended without
 * it is a kill-window loss (RFC 8628 device codes are single-use: a token held only by the killed process is gone),
 * reported as a rate and not failed; every other unfinished or wrongly ended flow fails the run.
 */
export function judge(
  ledger: Ledger,
  upstream: readonly UpstreamFlowView[],
  kills: readonly number[],
  windowMs: number,
  errorLogs: number,
): Verdict {
  const byCode = new Map(upstream.map((u) => [u.userCode, u]));
  const v: Verdict = {
    flows: ledger.flows.length,
    authorized: 0,
    lost: 0,
    double: 0,
    crossDevice: ledger.strayTopics,
    wrong: 0,
    killWindow: 0,
    replays: 0,
    errorLogs,
    why: {},
    failures: [],
    pass: false,
  };
  for (const f of ledger.flows) {
    const up = f.userCode === undefined ? undefined : byCode.get(f.userCode);
    if (f.crossDevice) v.crossDevice += 1;
    if (f.authorizedReplies > 1 + f.statusAsks) v.double += 1;
    if (f.outcome === 'authorized') {
      v.authorized += 1;
      // the device has its token, yet its code was polled again after redemption: two polls overlapped
      if ((up?.afterToken ?? 0) > 0) v.replays += 1;
      continue;
    }
    if (inKillWindow(f, up?.tokenSentAt, kills, windowMs)) {
      v.killWindow += 1;
      continue;
    }
    if (f.outcome === 'error' && f.userCode !== undefined) v.wrong += 1;
    else v.lost += 1;
    const why = f.outcome === 'error' ? `error:${f.error ?? '?'}` : f.outcome;
    v.why[why] = (v.why[why] ?? 0) + 1;
    if (v.failures.length < 10)
      v.failures.push({ device: f.device, rid: f.rid, why, startedAt: f.startedAt });
  }
  v.double += v.replays;
  v.pass = v.lost + v.double + v.crossDevice + v.wrong === 0;
  return v;
}

/**
 * A token the upstream issued within `windowMs` of a SIGKILL (it may have lived only in the killed process), or a
 * request that never got its pending reply and was sent within `windowMs` before a SIGKILL (the killed instance may
 * have taken it from the broker: the gateway's clean session leaves nobody to redeliver it).
 */
function inKillWindow(
  f: FlowRecord,
  tokenSentAt: number | undefined,
  kills: readonly number[],
  windowMs: number,
): boolean {
  if (tokenSentAt !== undefined) return kills.some((k) => Math.abs(k - tokenSentAt) <= windowMs);
  return f.outcome === 'dropped' && kills.some((k) => k >= f.authorizeAt && k - f.authorizeAt <= windowMs);
}

import { describe, expect, it } from 'vitest';
import { FakeClock } from '../helpers/clock.ts';
import {
  apply,
  dueAt,
  flowError,
  isExpired,
  secondsLeft,
  SLOW_DOWN_STEP_SECONDS,
  tokenExpired,
} from '../../src/core/engine.ts';
import { renderReply } from '../../src/service/replies.ts';
import { deriveKeys } from '../../src/core/crypto.ts';
import type { BridgeFlow, RelayFlow } from '../../src/core/flow.ts';
import { stateRank } from '../../src/core/flow.ts';

const KEYS = deriveKeys('engine-test-secret-0123456789abcdef');

const clock = new FakeClock(Date.UTC(2026, 10, 27, 12, 0, 0));
const T0 = clock.now();
const TOKEN = { access_token: 'at-123', token_type: 'Bearer', expires_in: 3600, scope: 'openid' };

function relayFlow(over: Partial<RelayFlow> = {}): RelayFlow {
  return {
    deviceId: 'tv-1',
    rid: 'r1',
    mode: 'device',
    state: 'pending',
    scope: 'openid',
    createdAt: T0,
    expiresAt: T0 + 600_000,
    interval: 5,
    nextPollAt: T0 + 5000,
    verificationUri: 'https://idp.example/device',
    secrets: { userCode: 'WDJB-MJHT', deviceCode: 'dc-secret' },
    ...over,
  };
}

function bridgeFlow(over: Partial<BridgeFlow> = {}): BridgeFlow {
  return {
    deviceId: 'tv-1',
    rid: 'r1',
    mode: 'authorization_code',
    state: 'pending',
    scope: 'openid',
    createdAt: T0,
    expiresAt: T0 + 600_000,
    interval: 5,
    secrets: { userCode: 'WDJB-MJHT' },
    ...over,
  };
}

describe('expiry edges (RFC 8628 §3.2: valid up to and including expires_in)', () => {
  const flow = relayFlow();
  it('is live one second before expiry', () => {
    expect(isExpired(flow, flow.expiresAt - 1000)).toBe(false);
    expect(apply(flow, { type: 'status' }, flow.expiresAt - 1000).flow.state).toBe('pending');
  });
  it('is live exactly at expiry', () => {
    expect(isExpired(flow, flow.expiresAt)).toBe(false);
    const t = apply(flow, { type: 'status' }, flow.expiresAt);
    expect(t.flow.state).toBe('pending');
    expect(t.changed).toBe(false);
  });
  it('expires one millisecond and one second after', () => {
    for (const now of [flow.expiresAt + 1, flow.expiresAt + 1000]) {
      const t = apply(flow, { type: 'status' }, now);
      expect(t.flow.state).toBe('expired');
      expect(t.changed).toBe(true);
      expect(t.notify).toBe(true);
      expect(flowError(t.flow, T0)?.code).toBe('expired_token');
    }
  });
  it('drops the device code and keeps no poll schedule once expired', () => {
    const t = apply(flow, { type: 'tick' }, flow.expiresAt + 1);
    expect(t.flow.secrets.deviceCode).toBeUndefined();
    expect(t.flow.nextPollAt).toBeUndefined();
    expect(t.notify).toBe(true);
  });
  it('refuses approval of an expired bridge flow', () => {
    const t = apply(bridgeFlow(), { type: 'approve', codeVerifier: 'v' }, T0 + 600_001);
    expect(t.flow.state).toBe('expired');
    expect(t.reject?.code).toBe('invalid_request');
    expect(t.flow.approvedAt).toBeUndefined();
  });
  it('approves a bridge flow exactly at expiry', () => {
    const t = apply(bridgeFlow(), { type: 'approve', codeVerifier: 'v' }, T0 + 600_000);
    expect(t.flow.approvedAt).toBe(T0 + 600_000);
    expect(t.flow.secrets.codeVerifier).toBe('v');
  });
  it('reports expires_in rounded up and never negative', () => {
    expect(secondsLeft(flow, T0)).toBe(600);
    expect(secondsLeft(flow, T0 + 599_001)).toBe(1);
    expect(secondsLeft(flow, T0 + 700_000)).toBe(0);
  });
});

describe('relay polling (RFC 8628 §3.5)', () => {
  it('authorization_pending schedules the next poll one interval later and clears failures', () => {
    const t = apply(
      relayFlow({ failures: 2 }),
      { type: 'poll', outcome: { kind: 'authorization_pending' } },
      T0 + 5000,
    );
    expect(t.flow.nextPollAt).toBe(T0 + 10_000);
    expect(t.flow.failures).toBeUndefined();
    expect(t.notify).toBe(false);
  });
  it('slow_down adds 5 s for this and all later polls', () => {
    let f = relayFlow();
    let now = T0 + 5000;
    const seen: number[] = [];
    for (let i = 0; i < 3; i++) {
      f = apply(f, { type: 'poll', outcome: { kind: 'slow_down' } }, now).flow;
      seen.push(f.interval);
      expect(f.nextPollAt).toBe(now + f.interval * 1000);
      now = f.nextPollAt!;
    }
    expect(seen).toEqual([10, 15, 20]);
    // a later authorization_pending keeps the increased interval
    f = apply(f, { type: 'poll', outcome: { kind: 'authorization_pending' } }, now).flow;
    expect(f.interval).toBe(5 + 3 * SLOW_DOWN_STEP_SECONDS);
    expect(f.nextPollAt).toBe(now + 20_000);
  });
  it('slow_down naming a new interval (GitHub) sets it, but never shortens the current one', () => {
    let f = relayFlow();
    const now = T0 + 5000;
    f = apply(f, { type: 'poll', outcome: { kind: 'slow_down', intervalSeconds: 7 } }, now).flow;
    expect(f.interval).toBe(7);
    expect(f.nextPollAt).toBe(now + 7000);
    f = apply(f, { type: 'poll', outcome: { kind: 'slow_down', intervalSeconds: 2 } }, now).flow;
    expect(f.interval).toBe(7);
  });
  it('connection trouble doubles the wait per failure and honours Retry-After', () => {
    let f = relayFlow();
    f = apply(f, { type: 'poll', outcome: { kind: 'unreachable' } }, T0).flow;
    expect(f.failures).toBe(1);
    expect(f.nextPollAt).toBe(T0 + 10_000);
    f = apply(f, { type: 'poll', outcome: { kind: 'unreachable' } }, T0).flow;
    expect(f.nextPollAt).toBe(T0 + 20_000);
    f = apply(f, { type: 'poll', outcome: { kind: 'unreachable', retryAfterSeconds: 120 } }, T0).flow;
    expect(f.nextPollAt).toBe(T0 + 120_000);
    expect(f.interval).toBe(5);
    expect(f.state).toBe('pending');
  });
  it('the backoff is capped', () => {
    let f = relayFlow();
    for (let i = 0; i < 20; i++) f = apply(f, { type: 'poll', outcome: { kind: 'unreachable' } }, T0).flow;
    expect(f.nextPollAt).toBe(T0 + 5000 * 32);
  });
  it('a token authorizes, drops the device code and notifies', () => {
    const t = apply(relayFlow(), { type: 'poll', outcome: { kind: 'token', token: TOKEN } }, T0 + 5000);
    expect(t.flow.state).toBe('authorized');
    expect(t.flow.secrets.token).toEqual(TOKEN);
    expect(t.flow.secrets.deviceCode).toBeUndefined();
    expect(t.notify).toBe(true);
  });
  it('a token that arrives just after expiry is still accepted (the upstream decided while live)', () => {
    const f = relayFlow();
    const t = apply(f, { type: 'poll', outcome: { kind: 'token', token: TOKEN } }, f.expiresAt + 10);
    expect(t.flow.state).toBe('authorized');
  });
  it('access_denied, expired_token and other errors finish the flow', () => {
    expect(apply(relayFlow(), { type: 'poll', outcome: { kind: 'access_denied' } }, T0).flow.state).toBe(
      'denied',
    );
    expect(
      flowError(apply(relayFlow(), { type: 'poll', outcome: { kind: 'access_denied' } }, T0).flow, T0)?.code,
    ).toBe('access_denied');
    expect(apply(relayFlow(), { type: 'poll', outcome: { kind: 'expired_token' } }, T0).flow.state).toBe(
      'expired',
    );
    const failed = apply(
      relayFlow(),
      { type: 'poll', outcome: { kind: 'error', code: 'unauthorized_client', description: 'no' } },
      T0,
    ).flow;
    expect(failed.state).toBe('failed');
    expect(flowError(failed, T0)?.code).toBe('unauthorized_client');
  });
  it('polls of a finished flow change nothing', () => {
    const done = apply(relayFlow(), { type: 'poll', outcome: { kind: 'access_denied' } }, T0).flow;
    const t = apply(done, { type: 'poll', outcome: { kind: 'token', token: TOKEN } }, T0);
    expect(t.changed).toBe(false);
    expect(t.flow.state).toBe('denied');
  });
});

describe('a poll whose answer was lost (RFC 8628 device codes are one-time)', () => {
  const invalidGrant = { type: 'poll', outcome: { kind: 'invalid_grant' } } as const;

  it('polling marks the poll in flight, and its answer clears the mark', () => {
    const marked = apply(relayFlow(), { type: 'polling' }, T0 + 5000);
    expect(marked).toMatchObject({ changed: true, notify: false, flow: { pollSentAt: T0 + 5000 } });
    expect(marked.flow.lostPoll).toBeUndefined();
    // a takeover looks again a lease after the poll was sent, not at the (past) poll time
    expect(dueAt(marked.flow, T0 + 5000, 10_000)).toBe(T0 + 15_000);
    for (const outcome of [
      { kind: 'authorization_pending' },
      { kind: 'slow_down' },
      { kind: 'unreachable' },
    ] as const) {
      expect(apply(marked.flow, { type: 'poll', outcome }, T0 + 5100).flow.pollSentAt).toBeUndefined();
    }
    const done = apply(marked.flow, { type: 'poll', outcome: { kind: 'token', token: TOKEN } }, T0 + 5100);
    expect(done.flow.pollSentAt).toBeUndefined();
  });

  it('invalid_grant with no answer lost: the upstream forgot the request, expired_token', () => {
    const answered = apply(relayFlow(), { type: 'polling' }, T0).flow;
    const t = apply(answered, invalidGrant, T0 + 100);
    expect(t).toMatchObject({ changed: true, notify: true, flow: { state: 'expired' } });
    expect(flowError(t.flow, T0)).toMatchObject({
      code: 'expired_token',
      description: 'the identity provider no longer knows this request',
    });
  });

  it('invalid_grant after a poll whose answer was lost: the truth (the approval may have been used), not expired_token', () => {
    // an instance marked its poll and stopped before it recorded the answer; the next poll finds the mark
    const lost = apply(relayFlow(), { type: 'polling' }, T0).flow;
    const again = apply(lost, { type: 'polling' }, T0 + 10_000);
    expect(again.flow).toMatchObject({ pollSentAt: T0 + 10_000, lostPoll: true });
    const t = apply(again.flow, invalidGrant, T0 + 10_100);
    expect(t.flow).toMatchObject({ state: 'failed' });
    expect(t.flow.lostPoll).toBeUndefined();
    expect(flowError(t.flow, T0)).toMatchObject({
      code: 'server_error',
      description: 'the approval may have been used by a gateway instance that stopped; start a new request',
    });
    // the mark is sticky until a result: a pending answer in between does not forget the lost one
    const pendingBetween = apply(
      again.flow,
      { type: 'poll', outcome: { kind: 'authorization_pending' } },
      T0,
    );
    expect(pendingBetween.flow.lostPoll).toBe(true);
  });

  it('polling a finished flow, or a bridge flow, changes nothing', () => {
    const done = apply(relayFlow(), { type: 'poll', outcome: { kind: 'access_denied' } }, T0).flow;
    expect(apply(done, { type: 'polling' }, T0).changed).toBe(false);
    expect(apply(bridgeFlow(), { type: 'polling' }, T0).changed).toBe(false);
  });
});

describe('device events', () => {
  it('status of a pending flow notifies without a change', () => {
    const t = apply(relayFlow(), { type: 'status' }, T0);
    expect(t).toMatchObject({ changed: false, notify: true });
  });
  it('ack of a pending flow is refused', () => {
    const t = apply(relayFlow(), { type: 'ack' }, T0);
    expect(t.reject?.code).toBe('invalid_request');
    expect(t.changed).toBe(false);
  });
  it('ack of an authorized flow forgets the token', () => {
    const done = apply(relayFlow(), { type: 'poll', outcome: { kind: 'token', token: TOKEN } }, T0).flow;
    const t = apply(done, { type: 'ack' }, T0);
    expect(t.flow.state).toBe('acked');
    expect(t.flow.secrets.token).toBeUndefined();
    expect(t.notify).toBe(false);
    // a second ack is a no-op, a status after ack is refused
    expect(apply(t.flow, { type: 'ack' }, T0).changed).toBe(false);
    expect(apply(t.flow, { type: 'status' }, T0).reject?.code).toBe('invalid_request');
  });
  it('cancel of a pending flow ends it with access_denied and tells the device', () => {
    const t = apply(relayFlow(), { type: 'cancel' }, T0);
    expect(t.flow.state).toBe('cancelled');
    expect(t.notify).toBe(true);
    expect(flowError(t.flow, T0)?.code).toBe('access_denied');
  });
  it('cancel of a finished flow is refused', () => {
    const done = apply(relayFlow(), { type: 'poll', outcome: { kind: 'access_denied' } }, T0).flow;
    expect(apply(done, { type: 'cancel' }, T0).reject?.code).toBe('invalid_request');
  });
});

describe('bridge events', () => {
  it('approve uses the code up: a second approve is refused', () => {
    const once = apply(bridgeFlow(), { type: 'approve', codeVerifier: 'v1', nonce: 'n' }, T0);
    expect(once.changed).toBe(true);
    expect(once.flow.secrets.nonce).toBe('n');
    const twice = apply(once.flow, { type: 'approve', codeVerifier: 'v2' }, T0);
    expect(twice.reject?.code).toBe('invalid_request');
    expect(twice.flow.secrets.codeVerifier).toBe('v1');
  });
  it('deny finishes with access_denied and notifies', () => {
    const t = apply(bridgeFlow(), { type: 'deny' }, T0);
    expect(t.flow.state).toBe('denied');
    expect(t.notify).toBe(true);
  });
  it('a token after approval authorizes and drops the PKCE verifier', () => {
    const approved = apply(bridgeFlow(), { type: 'approve', codeVerifier: 'v' }, T0).flow;
    const t = apply(approved, { type: 'token', token: TOKEN }, T0 + 1000);
    expect(t.flow.state).toBe('authorized');
    expect(t.flow.secrets.codeVerifier).toBeUndefined();
  });
  it('fail maps access_denied to denied and other codes to failed', () => {
    expect(
      apply(bridgeFlow(), { type: 'fail', code: 'access_denied', description: 'x' }, T0).flow.state,
    ).toBe('denied');
    expect(apply(bridgeFlow(), { type: 'fail', code: 'server_error', description: 'x' }, T0).flow.state).toBe(
      'failed',
    );
  });
  it('a token for a denied flow is refused (no resurrection, Abblix#459)', () => {
    const denied = apply(bridgeFlow(), { type: 'deny' }, T0).flow;
    const t = apply(denied, { type: 'token', token: TOKEN }, T0);
    expect(t.changed).toBe(false);
    expect(t.flow.state).toBe('denied');
  });
});

describe('delivery and schedule', () => {
  it('delivered is recorded once for a finished flow', () => {
    const done = apply(relayFlow(), { type: 'poll', outcome: { kind: 'token', token: TOKEN } }, T0).flow;
    const t = apply(done, { type: 'delivered' }, T0 + 5);
    expect(t.flow.deliveredAt).toBe(T0 + 5);
    expect(apply(t.flow, { type: 'delivered' }, T0 + 9).changed).toBe(false);
    expect(apply(relayFlow(), { type: 'delivered' }, T0).changed).toBe(false);
  });
  it('a tick on an undelivered result asks for delivery', () => {
    const done = apply(relayFlow(), { type: 'poll', outcome: { kind: 'token', token: TOKEN } }, T0).flow;
    expect(apply(done, { type: 'tick' }, T0).notify).toBe(true);
    expect(apply({ ...done, deliveredAt: T0 }, { type: 'tick' }, T0).notify).toBe(false);
  });
  it('dueAt: next poll for relay, just after expiry for bridge, a lease later for undelivered, never after', () => {
    expect(dueAt(relayFlow(), T0, 10_000)).toBe(T0 + 5000);
    expect(dueAt(relayFlow({ nextPollAt: T0 + 700_000 }), T0, 10_000)).toBe(T0 + 600_001);
    expect(dueAt(bridgeFlow(), T0, 10_000)).toBe(T0 + 600_001);
    const done = apply(relayFlow(), { type: 'poll', outcome: { kind: 'token', token: TOKEN } }, T0).flow;
    expect(dueAt(done, T0, 10_000)).toBe(T0 + 10_000);
    expect(dueAt({ ...done, deliveredAt: T0 }, T0, 10_000)).toBeUndefined();
  });
  it('state ranks never go down along the engine transitions', () => {
    const f = relayFlow();
    const events = [
      { type: 'poll', outcome: { kind: 'token', token: TOKEN } },
      { type: 'deny' },
      { type: 'cancel' },
      { type: 'ack' },
      { type: 'status' },
      { type: 'poll', outcome: { kind: 'slow_down' } },
    ] as const;
    let cur = f;
    for (const e of events) {
      const next = apply(cur, e, T0).flow;
      expect(stateRank(next.state)).toBeGreaterThanOrEqual(stateRank(cur.state));
      cur = next;
    }
    expect(cur.state).toBe('acked');
  });
});

describe('each mode takes only its own events', () => {
  it('a relay flow has no code of the gateway’s to approve', () => {
    const t = apply(relayFlow(), { type: 'approve', codeVerifier: 'v' }, T0);
    expect(t.changed).toBe(false);
    expect(t.reject?.code).toBe('invalid_request');
    expect(t.flow).toEqual(relayFlow());
  });
  it('a bridge flow is never polled: a poll outcome changes nothing', () => {
    for (const outcome of [
      { kind: 'token', token: TOKEN },
      { kind: 'slow_down' },
      { kind: 'unreachable' },
    ] as const) {
      const t = apply(bridgeFlow(), { type: 'poll', outcome }, T0);
      expect(t).toEqual({ flow: bridgeFlow(), changed: false, notify: false });
    }
  });
  it('a finished flow keeps only its own mode’s fields and no upstream secrets', () => {
    const relay = apply(relayFlow({ failures: 1 }), { type: 'cancel' }, T0).flow;
    expect(relay).not.toHaveProperty('nextPollAt');
    expect(relay).not.toHaveProperty('failures');
    expect(relay.secrets).toEqual({ userCode: 'WDJB-MJHT' });
    const approved = apply(bridgeFlow(), { type: 'approve', codeVerifier: 'v', nonce: 'n' }, T0).flow;
    const bridge = apply(approved, { type: 'token', token: TOKEN }, T0);
    expect(bridge.flow).toMatchObject({ mode: 'authorization_code', state: 'authorized', approvedAt: T0 });
    expect(bridge.flow.secrets).toEqual({ userCode: 'WDJB-MJHT', token: TOKEN });
  });
  it('secrets a finish leaves unchanged stay the same object (the codec seals them once)', () => {
    const denied = apply(bridgeFlow(), { type: 'deny' }, T0).flow;
    expect(apply(denied, { type: 'delivered' }, T0).flow.secrets).toBe(denied.secrets);
    const fresh = bridgeFlow();
    const expired = apply(fresh, { type: 'tick' }, T0 + 600_001).flow;
    expect(expired.state).toBe('expired');
    expect(expired.secrets).toBe(fresh.secrets);
    expect(apply(fresh, { type: 'cancel' }, T0).flow.secrets).toBe(fresh.secrets);
  });
});

describe('a queued token past its expiry is never delivered (expires_in counts from when the gateway got it)', () => {
  it('a relay token records when it arrived; at expires_in it becomes expired_token telling the device to refresh', async () => {
    const time = new FakeClock(T0);
    time.advance(5000);
    const got = time.now();
    const t = apply(
      relayFlow(),
      { type: 'poll', outcome: { kind: 'token', token: TOKEN, refreshable: true } },
      got,
    );
    expect(t.flow).toMatchObject({ state: 'authorized', tokenAt: got, refreshable: true });

    time.advance(3600 * 1000 - 1);
    expect(tokenExpired(t.flow, time.now())).toBe(false);
    expect(flowError(t.flow, time.now())).toBeUndefined();
    expect(await renderReply(t.flow, time.now(), 'https://gw.example', KEYS)).toMatchObject({
      status: 'authorized',
      access_token: 'at-123',
    });

    time.advance(1);
    expect(tokenExpired(t.flow, time.now())).toBe(true);
    const error = flowError(t.flow, time.now());
    expect(error).toMatchObject({
      code: 'expired_token',
      description: expect.stringMatching(/req\/refresh/),
    });
    // a redelivery (tick) and req/status both answer the device, with the error and never the dead token
    expect(apply(t.flow, { type: 'tick' }, time.now()).notify).toBe(true);
    expect(apply(t.flow, { type: 'status' }, time.now()).notify).toBe(true);
    const reply = await renderReply(t.flow, time.now(), 'https://gw.example', KEYS);
    expect(reply).toMatchObject({ status: 'error', error: 'expired_token', rid: 'r1' });
    expect(JSON.stringify(reply)).not.toContain('at-123');
  });

  it('without a kept grant the device is told to start again; a bridge token is timed the same way', async () => {
    const time = new FakeClock(T0);
    const t = apply(bridgeFlow(), { type: 'token', token: { ...TOKEN, expires_in: 60 } }, time.now());
    expect(t.flow.tokenAt).toBe(T0);
    expect(t.flow.refreshable).toBeUndefined();
    time.advance(60_000);
    expect(flowError(t.flow, time.now())).toMatchObject({
      code: 'expired_token',
      description: expect.stringMatching(/start a new request/),
    });
  });

  it('a token without expires_in is never counted as expired', () => {
    const { expires_in: _none, ...token } = TOKEN;
    const t = apply(bridgeFlow(), { type: 'token', token }, T0);
    expect(tokenExpired(t.flow, T0 + 365 * 86_400_000)).toBe(false);
  });
});

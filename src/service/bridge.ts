/**
 * Bridge mode (`DEVICEGATE_UPSTREAM_MODE=authorization_code`): the gateway is the device authorization server toward
 * devices and a confidential OAuth client (authorization code + PKCE) toward the upstream. This is what the `/device`
 * page and `/oauth/callback` call; nothing here renders HTML.
 *
 * Rules (RFC 8628 §5, RFC 9700): user codes are looked up by keyed hash and compared in constant time; a code is
 * dead once approved, denied or expired; `state` is bound to the browser (cookie) and usable once; the upstream code
 * is exchanged once, by the holder of the flow's lease; the device is told at once.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { normalizeUserCode } from '../core/codes.ts';
import type { Keys } from '../core/crypto.ts';
import { OAuthError, UnavailableError } from '../core/errors.ts';
import { isExpired } from '../core/engine.ts';
import type { BridgeFlow, Flow } from '../core/flow.ts';
import { type FlowStore, GRACE_MS } from '../store/types.ts';
import type { BridgeUpstream } from '../upstream/types.ts';
import { userCodeHash } from './start-bridge.ts';
import { newLeaseToken } from './lease.ts';
import type { FlowUpdater, UpdateOptions } from './updater.ts';
import type { Metrics } from '../observability/metrics.ts';

/** Longest time between Approve and the upstream's redirect back. */
export const MAX_AUTHORIZE_MS = 10 * 60 * 1000;

export type CallbackOutcome =
  /** the device got its token */
  | { outcome: 'authorized'; flow: Flow }
  /** the person (or the upstream) refused; the device was told `access_denied` */
  | { outcome: 'denied'; flow: Flow }
  /** the flow's lifetime ended first; the device was told `expired_token` */
  | { outcome: 'expired' }
  /** the upstream failed; the device was told */
  | { outcome: 'failed'; error: OAuthError }
  /** no such state, replayed, or not from this browser: nothing happened */
  | { outcome: 'invalid' };

export interface BridgeDeps {
  updater: FlowUpdater;
  store: FlowStore;
  upstream: BridgeUpstream;
  keys: Keys;
  clock: Clock;
  metrics: Metrics;
  log: Logger;
}

export class BridgeFlows {
  readonly #d: BridgeDeps;

  constructor(deps: BridgeDeps) {
    this.#d = deps;
  }

  /**
   * The live, unused, unexpired flow a typed code belongs to, or `undefined` — one answer for unknown, expired,
   * used and denied codes, so the page cannot tell them apart.
   */
  async lookup(input: string): Promise<BridgeFlow | undefined> {
    const canonical = normalizeUserCode(input);
    if (canonical === undefined) return undefined;
    const ref = await this.#d.store.findUserCode(this.#codeHash(canonical));
    if (ref === undefined) return undefined;
    const current = await this.#d.store.get(ref.deviceId, ref.rid);
    if (current === undefined) return undefined;
    const { flow } = current;
    if (!sameCode(flow.secrets.userCode, canonical)) return undefined;
    if (flow.mode !== 'authorization_code') return undefined; // relay flows reserve no code of the gateway's
    if (flow.state !== 'pending' || flow.approvedAt !== undefined || isExpired(flow, this.#d.clock.now())) {
      return undefined;
    }
    return flow;
  }

  /**
   * The person approved: the code is used up, and the browser goes to the upstream's authorize endpoint with PKCE
   * S256 and a fresh `state` (which the caller binds to a cookie). `undefined` when the code is no longer usable.
   */
  async approve(input: string): Promise<{ redirectUrl: string; state: string } | undefined> {
    const flow = await this.lookup(input);
    if (flow === undefined) return undefined;
    const state = randomBytes(32).toString('base64url');
    const request = await this.#d.upstream.authorizationRequest({ state, scope: flow.scope });
    const r = await this.#d.updater.update({
      deviceId: flow.deviceId,
      rid: flow.rid,
      event: {
        type: 'approve',
        codeVerifier: request.codeVerifier,
        ...(request.nonce !== undefined && { nonce: request.nonce }),
      },
    });
    if (r.status !== 'ok' || r.transition.reject !== undefined || !r.transition.changed) return undefined;
    await this.#d.store.releaseUserCode(this.#codeHash(normalizeUserCode(input)!));
    const now = this.#d.clock.now();
    // Kept past expiry (with the record's grace) so a late callback can still tell the device `expired_token`.
    const ttl = Math.max(1000, flow.expiresAt + GRACE_MS - now);
    await this.#d.store.putOnce(this.#stateHash(state), `${flow.deviceId}/${flow.rid}`, ttl);
    return { redirectUrl: request.url, state };
  }

  /** The person denied: the code dies and the device is told `access_denied` at once. `false` if not usable. */
  async deny(input: string): Promise<boolean> {
    const flow = await this.lookup(input);
    if (flow === undefined) return false;
    const r = await this.#d.updater.update({
      deviceId: flow.deviceId,
      rid: flow.rid,
      event: { type: 'deny' },
    });
    await this.#d.store.releaseUserCode(this.#codeHash(normalizeUserCode(input)!));
    return r.status === 'ok' && r.transition.reject === undefined;
  }

  /**
   * `/oauth/callback`: checks that `state` came back to the browser it was issued to and was never used, then
   * exchanges the code once (holding the flow's lease) and pushes the result to the device.
   */
  async callback(params: URLSearchParams, browserState: string | undefined): Promise<CallbackOutcome> {
    const { store, clock, updater, log } = this.#d;
    const state = params.get('state');
    if (state === null || browserState === undefined || !sameSecret(state, browserState))
      return { outcome: 'invalid' };
    const ref = await store.takeOnce(this.#stateHash(state));
    if (ref === undefined) return { outcome: 'invalid' };
    const slash = ref.indexOf('/');
    const deviceId = ref.slice(0, slash);
    const rid = ref.slice(slash + 1);
    const lease = newLeaseToken();
    if (!(await store.acquireLease(deviceId, rid, lease, clock.now(), MAX_AUTHORIZE_MS)))
      return { outcome: 'invalid' };
    try {
      const current = await store.get(deviceId, rid);
      if (current === undefined) return { outcome: 'expired' };
      const { flow } = current;
      if (
        flow.mode !== 'authorization_code' ||
        flow.state !== 'pending' ||
        flow.approvedAt === undefined ||
        flow.secrets.codeVerifier === undefined
      ) {
        return { outcome: 'invalid' };
      }
      if (isExpired(flow, clock.now())) {
        await updater.update({ deviceId, rid, event: { type: 'tick' }, leaseToken: lease, known: current });
        return { outcome: 'expired' };
      }
      let event: UpdateOptions['event'];
      try {
        const token = await this.#d.upstream.exchangeCode(params, {
          state,
          codeVerifier: flow.secrets.codeVerifier,
          ...(flow.secrets.nonce !== undefined && { nonce: flow.secrets.nonce }),
        });
        event = { type: 'token', token };
      } catch (err) {
        const e =
          err instanceof OAuthError
            ? err
            : new OAuthError(
                'server_error',
                err instanceof UnavailableError
                  ? 'the identity provider could not be reached'
                  : 'the sign-in failed',
              );
        if (!(err instanceof OAuthError)) log.warn({ deviceId, rid, err }, 'code exchange failed');
        event = { type: 'fail', code: e.code, description: e.description };
      }
      const r = await updater.update({ deviceId, rid, event, leaseToken: lease, known: current });
      if (r.status !== 'ok') return { outcome: 'invalid' };
      const after = r.transition.flow;
      if (after.state === 'authorized') return { outcome: 'authorized', flow: after };
      if (after.state === 'denied') return { outcome: 'denied', flow: after };
      if (after.state === 'expired') return { outcome: 'expired' };
      return {
        outcome: 'failed',
        error: new OAuthError(
          after.error?.code ?? 'server_error',
          after.error?.description ?? 'the sign-in failed',
        ),
      };
    } finally {
      await store.releaseLease(deviceId, rid, lease).catch(() => undefined);
    }
  }

  #codeHash(canonical: string): string {
    return userCodeHash(this.#d.keys, canonical);
  }

  #stateHash(state: string): string {
    return this.#d.keys.lookupHash('oauth_state', state);
  }
}

/** Constant-time equality of a stored user code (`XXXX-XXXX`) and a canonical one (`XXXXXXXX`). */
function sameCode(stored: string, canonical: string): boolean {
  return sameSecret(stored.replaceAll('-', ''), canonical);
}

/** Constant-time equality of two strings. */
function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Bridge mode (`DEVICEGATE_UPSTREAM_MODE=authorization_code`): the gateway is the device authorization server toward
 * devices and a confidential OAuth client (authorization code + PKCE) toward the upstream. This is what the `/device`
 * page and `/oauth/callback` call; nothing here renders HTML.
 *
 * Rules (RFC 8628 §5, RFC 9700): user codes are looked up by keyed hash and compared in constant time; a code is
 * dead once approved, denied or expired; `state` is bound to the browser session that saw the confirm page and
 * completes one callback, deleted only once that callback is done; the upstream code is exchanged once, by the holder
 * of the flow's lease; the device is told at once.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Clock } from '../core/clock.ts';
import { normalizeUserCode } from '../core/codes.ts';
import type { Keys } from '../core/crypto.ts';
import { OAuthError, UnavailableError } from '../core/errors.ts';
import { isExpired } from '../core/engine.ts';
import type { BridgeFlow, Flow } from '../core/flow.ts';
import { type FlowStore, GRACE_MS } from '../store/types.ts';
import type { BridgeUpstream, SignIn } from '../upstream/types.ts';
import { type ApprovalCap, OVER_CAP } from './approval-cap.ts';
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
  /** the person reached the approval cap (src/service/approval-cap.ts); the device was told `access_denied` */
  | { outcome: 'capped' }
  /** the flow's lifetime ended first; the device was told `expired_token` */
  | { outcome: 'expired' }
  /** the upstream failed; the device was told */
  | { outcome: 'failed'; error: OAuthError }
  /** no such state, replayed, or not from the browser session it was issued to: nothing happened */
  | { outcome: 'invalid' };

export interface BridgeDeps {
  updater: FlowUpdater;
  store: FlowStore;
  upstream: BridgeUpstream;
  keys: Keys;
  clock: Clock;
  metrics: Metrics;
  log: Logger;
  /** the per-person approval cap, applied to the subject of each sign-in */
  cap: ApprovalCap;
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
   * The person approved, in the browser session `session` (the CSRF session that saw the confirm page): the code is
   * used up, a fresh `state` is stored bound to that session (keyed hash, never the id itself), and the browser goes
   * to the upstream's authorize endpoint with PKCE S256 and that `state`. `undefined` when the code is no longer
   * usable.
   */
  async approve(input: string, session: string): Promise<{ redirectUrl: string } | undefined> {
    const flow = await this.lookup(input);
    if (flow === undefined) return undefined;
    const state = randomBytes(32).toString('base64url');
    // With the approval cap on, the sign-in must name the person: ask for an ID token whatever scope the device chose
    // (a device could otherwise keep its flows out of the cap by leaving `openid` out).
    const scope = this.#d.cap.enabled ? withOpenid(flow.scope) : flow.scope;
    const request = await this.#d.upstream.authorizationRequest({ state, scope });
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
    const ref: StateRef = { deviceId: flow.deviceId, rid: flow.rid, browser: this.#browserHash(session) };
    await this.#d.store.putOnce(this.#stateHash(state), JSON.stringify(ref), ttl);
    return { redirectUrl: request.url };
  }

  /**
   * The person denied, from the browser at `network`: the code dies and the device is told `access_denied` at once.
   * `false` if not usable.
   */
  async deny(input: string, network?: string): Promise<boolean> {
    const flow = await this.lookup(input);
    if (flow === undefined) return false;
    const r = await this.#d.updater.update({
      deviceId: flow.deviceId,
      rid: flow.rid,
      event: { type: 'deny' },
      actor: { network },
    });
    await this.#d.store.releaseUserCode(this.#codeHash(normalizeUserCode(input)!));
    return r.status === 'ok' && r.transition.reject === undefined;
  }

  /**
   * `/oauth/callback`, arriving in browser session `session`: the `state` must be one this gateway issued, still
   * unused, and issued to this very session — else `invalid`, and the stored state is left alone (a planted or
   * crossed callback cannot spend another browser's state). Then, holding the flow's lease, the code is exchanged
   * once and the result written; only then is the state deleted, so a callback that failed on the store (thrown
   * `UnavailableError`, the page's 503) can be retried. A replay finds the flow no longer awaiting its callback.
   */
  async callback(
    params: URLSearchParams,
    session: string | undefined,
    network?: string,
  ): Promise<CallbackOutcome> {
    const { store, clock, log } = this.#d;
    const state = params.get('state');
    if (state === null || session === undefined) return { outcome: 'invalid' };
    const stateKey = this.#stateHash(state);
    const ref = parseStateRef(await store.getOnce(stateKey));
    if (ref === undefined || !sameSecret(ref.browser, this.#browserHash(session)))
      return { outcome: 'invalid' };
    const { deviceId, rid } = ref;
    const lease = newLeaseToken();
    let held: boolean;
    try {
      held = await store.acquireLease(deviceId, rid, lease, clock.now(), MAX_AUTHORIZE_MS);
    } catch (err) {
      // A timed-out call may still have taken the lease in the store: give it back, or the retry would find the
      // flow leased for MAX_AUTHORIZE_MS. On one Redis connection the release runs after the take.
      await store.releaseLease(deviceId, rid, lease).catch(() => undefined);
      throw err;
    }
    if (!held) return { outcome: 'invalid' };
    try {
      const outcome = await this.#complete({ deviceId, rid, state, params, lease, network });
      // Finished either way; a leftover state is harmless (its flow no longer awaits a callback) and expires.
      await store.deleteOnce(stateKey).catch((err: unknown) => log.warn({ err }, 'state not deleted'));
      return outcome;
    } finally {
      await store.releaseLease(deviceId, rid, lease).catch(() => undefined);
    }
  }

  /** The callback's work under the lease: check the flow, exchange the code, cap, write and tell the device. */
  async #complete(c: {
    deviceId: string;
    rid: string;
    state: string;
    params: URLSearchParams;
    lease: string;
    network: string | undefined;
  }): Promise<CallbackOutcome> {
    const { deviceId, rid, state, params, lease } = c;
    const { store, clock, updater } = this.#d;
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
    const { event, capped, subject } = await this.#exchange(flow, state, params);
    const actor = { subject, network: c.network };
    const r = await updater.update({ deviceId, rid, event, leaseToken: lease, known: current, actor });
    if (r.status !== 'ok') return { outcome: 'invalid' };
    const after = r.transition.flow;
    if (after.state === 'authorized') return { outcome: 'authorized', flow: after };
    if (capped && after.state === 'denied') return { outcome: 'capped' };
    if (after.state === 'denied') return { outcome: 'denied', flow: after };
    if (after.state === 'expired') return { outcome: 'expired' };
    return {
      outcome: 'failed',
      error: new OAuthError(
        after.error?.code ?? 'server_error',
        after.error?.description ?? 'the sign-in failed',
      ),
    };
  }

  /** Exchanges the code once and applies the per-person cap: the event the flow gets, and whether the cap refused. */
  async #exchange(
    flow: BridgeFlow,
    state: string,
    params: URLSearchParams,
  ): Promise<{ event: UpdateOptions['event']; capped: boolean; subject?: string }> {
    const { deviceId, rid } = flow;
    let signIn: SignIn;
    try {
      signIn = await this.#d.upstream.exchangeCode(params, {
        state,
        codeVerifier: flow.secrets.codeVerifier!,
        ...(flow.secrets.nonce !== undefined && { nonce: flow.secrets.nonce }),
      });
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
      if (!(err instanceof OAuthError)) this.#d.log.warn({ deviceId, rid, err }, 'code exchange failed');
      const idpError = params.get('error');
      if (idpError !== null) {
        // RFC 6749 §4.1.2.1: the provider's own words are what an operator needs to fix its side (a client not
        // allowed a scope, a redirect URI not registered). An error response carries no code; nothing else is logged.
        const description = params.get('error_description');
        this.#d.log.info(
          {
            deviceId,
            rid,
            idpError: printable(idpError),
            ...(description !== null && { idpErrorDescription: printable(description) }),
          },
          'the identity provider refused the sign-in',
        );
      }
      return { event: { type: 'fail', code: e.code, description: e.description }, capped: false };
    }
    if (this.#d.cap.enabled && signIn.subject === undefined) {
      this.#d.log.warn(
        { deviceId, rid },
        'approval refused: the sign-in named no person, so the cap cannot count it',
      );
      return { event: { type: 'fail', code: 'access_denied', description: NO_SUBJECT }, capped: false };
    }
    if (signIn.subject !== undefined && !(await this.#d.cap.admit(signIn.subject))) {
      this.#d.log.info({ deviceId, rid }, 'approval refused: the person reached the approval cap');
      const event = { type: 'fail', code: 'access_denied', description: OVER_CAP } as const;
      return { event, capped: true, subject: signIn.subject };
    }
    return {
      event: { type: 'token', token: signIn.token },
      capped: false,
      ...(signIn.subject !== undefined && { subject: signIn.subject }),
    };
  }

  #codeHash(canonical: string): string {
    return userCodeHash(this.#d.keys, canonical);
  }

  #stateHash(state: string): string {
    return this.#d.keys.lookupHash('oauth_state', state);
  }

  #browserHash(session: string): string {
    return this.#d.keys.lookupHash('browser_session', session);
  }
}

/** What is stored under a `state`'s hash: its flow, and the keyed hash of the browser session that approved. */
const StateRef = z.object({ deviceId: z.string(), rid: z.string(), browser: z.string() });
type StateRef = z.infer<typeof StateRef>;

function parseStateRef(stored: string | undefined): StateRef | undefined {
  if (stored === undefined) return undefined;
  try {
    const r = StateRef.safeParse(JSON.parse(stored));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
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

/** Longest piece of the identity provider's text that is logged. */
const MAX_LOGGED_TEXT = 300;

/** The provider's text cut to {@link MAX_LOGGED_TEXT} with control characters replaced: it comes from a URL anyone can craft. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is replaced
  return text.slice(0, MAX_LOGGED_TEXT).replace(/[\u0000-\u001f\u007f]/g, '?');
}

/** What the device is told when the cap is on and the identity provider's answer named nobody. */
export const NO_SUBJECT =
  'the identity provider did not say who signed in, so the approval could not be counted; ask the operator';

/** `scope` with `openid` added when it lacks it. */
function withOpenid(scope: string): string {
  const scopes = scope.split(' ').filter((s) => s !== '');
  return scopes.includes('openid') ? scope : ['openid', ...scopes].join(' ');
}

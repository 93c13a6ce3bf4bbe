/**
 * Refresh-token custody. A refresh token that comes back with a result never reaches the flow or the device: it is
 * kept as the device's grant, sealed (AES-256-GCM bound to the device), under a keyed hash of the device id, for
 * `DEVICEGATE_GRANT_TTL`. `req/refresh` takes the grant (atomically, so two concurrent refreshes never both redeem
 * it) and puts it back afterwards. What is read back is validated; a grant that does not match is refused.
 *
 * A grant belongs to the authorization that made it (docs/security.md): every new authorization of the device
 * replaces the grant it had — with the new refresh token, or with none — and the replaced refresh token is revoked
 * at the upstream (RFC 7009) where it has a revocation endpoint. Dropping a grant writes an audit line
 * (`event: 'grant.revoked'`, never the token).
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Keys } from '../core/crypto.ts';
import type { FlowEvent } from '../core/engine.ts';
import type { Flow, PublicJwk } from '../core/flow.ts';
import { UnavailableError } from '../core/errors.ts';
import { authorizeRequest } from '../core/protocol.ts';
import { audit } from '../observability/audit.ts';
import type { FlowStore } from '../store/types.ts';
import type { RefreshingUpstream } from '../upstream/types.ts';
import { tokenOf } from './replies.ts';
import { storeCall } from './store-call.ts';

/** What the gateway keeps per device after an authorization with a refresh token. */
export interface Grant {
  refreshToken: string;
  /** the scope granted (the token's, else the flow's) */
  scope: string;
  /** the device's key: refreshed tokens are sent as JWE to it, as the first one was */
  jwk?: PublicJwk;
  /** the refresh token came from a rotation (a refresh answered with a new one), not from the authorization */
  rotated?: true;
}

const grantSchema = z.strictObject({
  refreshToken: z.string().min(1),
  scope: z.string(),
  jwk: authorizeRequest.shape.jwk,
  rotated: z.literal(true).optional(),
});

/** Why a grant was dropped, in the audit line. */
export type GrantDropReason =
  /** a newer authorization of the device replaced it */
  | 'replaced'
  /** the upstream refused the refresh (expired, revoked) */
  | 'refresh_refused'
  /** the upstream refused a refresh token that came from a rotation: possibly stolen and used (RFC 9700 §4.14) */
  | 'rotated_token_refused'
  /** the operator revoked the device (src/service/revocations.ts) */
  | 'device_revoked';

/** What {@link GrantStore.keep} hands back. */
export interface Kept {
  /** the event without the refresh token, marked `refreshable` when a grant is now kept */
  event: FlowEvent;
  /** the refresh token of the grant this authorization replaced: to {@link GrantStore.revoke} once the device is served */
  replaced?: string;
}

export interface GrantStoreDeps {
  store: FlowStore;
  keys: Keys;
  /** how long a grant is kept (s); 0 keeps none: refresh tokens are dropped */
  ttlSeconds: number;
  /** where replaced refresh tokens are revoked */
  upstream: RefreshingUpstream;
  /** for the audit lines */
  log: Logger;
}

export class GrantStore {
  readonly #d: GrantStoreDeps;

  constructor(deps: GrantStoreDeps) {
    this.#d = deps;
  }

  /**
   * When `event` is a result with a token set (a bridge `token`, or a relay poll's `token` outcome) for a pending
   * `flow`, the new authorization replaces the device's grant: its refresh token becomes the grant, or — without one,
   * or when grants are off — the device keeps none. Returns the event without the refresh token (marked
   * `refreshable` when a grant is kept) and the replaced refresh token, if any. A late duplicate (the flow is no
   * longer pending) and any other event change nothing.
   */
  async keep(flow: Flow, event: FlowEvent): Promise<Kept> {
    const token = tokenOf(event);
    if (token === undefined || flow.state !== 'pending') return { event: stripped(event) };
    const { refresh_token: refreshToken, ...rest } = token;
    const previous = await this.#takeQuietly(flow.deviceId);
    const keeps = refreshToken !== undefined && this.#d.ttlSeconds > 0;
    if (keeps) {
      await this.#put(flow.deviceId, {
        refreshToken,
        scope: rest.scope ?? flow.scope,
        ...(flow.jwk !== undefined && { jwk: flow.jwk }),
      });
    }
    const next: FlowEvent =
      event.type === 'token'
        ? { type: 'token', token: rest, ...(keeps && { refreshable: true }) }
        : { type: 'poll', outcome: { kind: 'token', token: rest, ...(keeps && { refreshable: true }) } };
    if (previous === undefined || previous.refreshToken === refreshToken) return { event: next };
    this.audit(flow.deviceId, 'replaced');
    return { event: next, replaced: previous.refreshToken };
  }

  /**
   * Revokes a refresh token the gateway dropped (RFC 7009), where the upstream has a revocation endpoint. Never
   * throws: a failure is logged, and the device is never held up by it.
   */
  async revoke(deviceId: string, refreshToken: string): Promise<void> {
    try {
      await this.#d.upstream.revoke(refreshToken);
    } catch (err) {
      this.#d.log.warn({ deviceId, err }, 'a dropped refresh token could not be revoked at the upstream');
    }
  }

  /**
   * Drops the device's grant, if it has one, and revokes its refresh token at the upstream: the device was revoked.
   * The take is atomic, so of several instances doing this at once exactly one revokes the token.
   */
  async dropRevoked(deviceId: string): Promise<void> {
    const grant = await this.#takeQuietly(deviceId);
    if (grant === undefined) return;
    this.audit(deviceId, 'device_revoked');
    await this.revoke(deviceId, grant.refreshToken);
  }

  /** The audit line of a dropped grant (never the token). */
  audit(deviceId: string, reason: GrantDropReason): void {
    audit(this.#d.log, 'grant.revoked', { deviceId, reason });
  }

  /**
   * Takes the device's grant: afterwards no one else can (until {@link putBack}). `undefined` when none is kept.
   * Throws when the stored grant cannot be opened or is not a grant.
   */
  async take(deviceId: string): Promise<Grant | undefined> {
    const sealed = await storeCall(() => this.#d.store.takeOnce(this.#key(deviceId)));
    if (sealed === undefined) return undefined;
    const parsed = grantSchema.safeParse(JSON.parse(this.#d.keys.open(sealed, aad(deviceId))));
    if (!parsed.success) throw new Error(`the grant kept for a device is malformed: ${parsed.error.message}`);
    const { refreshToken, scope, jwk, rotated } = parsed.data;
    return { refreshToken, scope, ...(jwk !== undefined && { jwk }), ...(rotated === true && { rotated }) };
  }

  /**
   * Keeps `grant` again after a refresh: with `rotatedTo`, the refresh token the upstream rotated to (the grant is
   * then marked `rotated`).
   */
  putBack(deviceId: string, grant: Grant, rotatedTo?: string): Promise<void> {
    if (rotatedTo === undefined || rotatedTo === grant.refreshToken) return this.#put(deviceId, grant);
    return this.#put(deviceId, { ...grant, refreshToken: rotatedTo, rotated: true });
  }

  /** {@link take}, with an unreadable grant dropped rather than thrown: a new authorization replaces it anyway. */
  async #takeQuietly(deviceId: string): Promise<Grant | undefined> {
    try {
      return await this.take(deviceId);
    } catch (err) {
      if (err instanceof UnavailableError) throw err;
      this.#d.log.warn({ deviceId, err }, 'an unreadable grant was dropped');
      return undefined;
    }
  }

  #put(deviceId: string, grant: Grant): Promise<void> {
    const sealed = this.#d.keys.seal(JSON.stringify(grant), aad(deviceId));
    return storeCall(() => this.#d.store.putOnce(this.#key(deviceId), sealed, this.#d.ttlSeconds * 1000));
  }

  /** A keyed hash, so the store key does not name the device. */
  #key(deviceId: string): string {
    return this.#d.keys.lookupHash('grant', deviceId);
  }
}

/** `event` as it is, or — for a late token result — without its refresh token, which nobody keeps. */
function stripped(event: FlowEvent): FlowEvent {
  if (event.type === 'token') {
    const { refresh_token: _drop, ...token } = event.token;
    return { ...event, token };
  }
  if (event.type === 'poll' && event.outcome.kind === 'token') {
    const { refresh_token: _drop, ...token } = event.outcome.token;
    return { type: 'poll', outcome: { ...event.outcome, token } };
  }
  return event;
}

/** Sealed grants are bound to their device: one device's grant cannot be moved to another's key. */
function aad(deviceId: string): string {
  return `grant/${deviceId}`;
}

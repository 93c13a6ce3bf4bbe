/**
 * Refresh-token custody. A refresh token that comes back with a result never reaches the flow or the device: it is
 * kept as the device's grant, sealed (AES-256-GCM bound to the device), under a keyed hash of the device id, for
 * `DEVICEGATE_GRANT_TTL`. `req/refresh` takes the grant (atomically, so two concurrent refreshes never both redeem
 * it) and puts it back afterwards. What is read back is validated; a grant that does not match is refused.
 */
import { z } from 'zod';
import type { Keys } from '../core/crypto.ts';
import type { FlowEvent } from '../core/engine.ts';
import type { Flow, PublicJwk } from '../core/flow.ts';
import { authorizeRequest } from '../core/protocol.ts';
import type { FlowStore } from '../store/types.ts';
import { storeCall } from './store-call.ts';

/** What the gateway keeps per device after an authorization with a refresh token. */
export interface Grant {
  refreshToken: string;
  /** the scope granted (the token's, else the flow's) */
  scope: string;
  /** the device's key: refreshed tokens are sent as JWE to it, as the first one was */
  jwk?: PublicJwk;
}

const grantSchema = z.strictObject({
  refreshToken: z.string().min(1),
  scope: z.string(),
  jwk: authorizeRequest.shape.jwk,
});

export interface GrantStoreDeps {
  store: FlowStore;
  keys: Keys;
  /** how long a grant is kept (s); 0 keeps none: refresh tokens are dropped */
  ttlSeconds: number;
}

export class GrantStore {
  readonly #d: GrantStoreDeps;

  constructor(deps: GrantStoreDeps) {
    this.#d = deps;
  }

  /**
   * When `event` carries a token set with a refresh token (a bridge `token`, or a relay poll's `token` outcome), keeps
   * that as the device's grant — only while `flow` is pending, so a late duplicate keeps nothing — and returns the
   * event without it. Any other event comes back as it is.
   */
  async keep(flow: Flow, event: FlowEvent): Promise<FlowEvent> {
    const token =
      event.type === 'token'
        ? event.token
        : event.type === 'poll' && event.outcome.kind === 'token'
          ? event.outcome.token
          : undefined;
    if (token?.refresh_token === undefined) return event;
    const { refresh_token: refreshToken, ...rest } = token;
    if (this.#d.ttlSeconds > 0 && flow.state === 'pending') {
      await this.#put(flow.deviceId, {
        refreshToken,
        scope: rest.scope ?? flow.scope,
        ...(flow.jwk !== undefined && { jwk: flow.jwk }),
      });
    }
    return event.type === 'token'
      ? { ...event, token: rest }
      : { type: 'poll', outcome: { kind: 'token', token: rest } };
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
    const { refreshToken, scope, jwk } = parsed.data;
    return { refreshToken, scope, ...(jwk !== undefined && { jwk }) };
  }

  /** Keeps `grant` again (after a refresh, with the rotated refresh token if the upstream rotated it). */
  putBack(deviceId: string, grant: Grant): Promise<void> {
    return this.#put(deviceId, grant);
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

/** Sealed grants are bound to their device: one device's grant cannot be moved to another's key. */
function aad(deviceId: string): string {
  return `grant/${deviceId}`;
}

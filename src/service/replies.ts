/**
 * What the device is told: the view of a flow (pending with its links, authorized with the token fields — as a JWE
 * when the device sent a key — or the error), and the one way replies leave the gateway.
 */
import type { Logger } from 'pino';
import { type FlowEvent, flowError, secondsLeft } from '../core/engine.ts';
import type { Keys } from '../core/crypto.ts';
import { type OAuthError, replyTooLarge, serverError } from '../core/errors.ts';
import type { Flow, PublicJwk, TokenSet } from '../core/flow.ts';
import { type AuthorizedReply, type DeviceReply, errorReply } from '../core/protocol.ts';
import { scanProof } from '../core/scan-link.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Oversize, ReplyRoute } from '../transport/types.ts';
import { checkDeviceKey, encryptForDevice, unusableKey } from './jwe.ts';

/** Where replies go: anything that publishes on a device's `res` topic (see `src/transport/types.ts`). */
export interface ReplyChannel {
  /**
   * Resolves once the broker has taken the reply; rejects when it could not. `route`: the request's own reply
   * route, for the direct answer to that request only (the transport checks it, see `DeviceTransport.publish`).
   */
  publish(deviceId: string, reply: DeviceReply, route?: ReplyRoute): Promise<void>;
  /** See `DeviceTransport.oversize`: a channel without a packet limit omits it. */
  oversize?(deviceId: string, reply: DeviceReply): Oversize | undefined;
}

/** The token endpoint members a device receives (RFC 6749 §5.1); a refresh token never leaves the gateway. */
export function tokenFields(token: TokenSet): Omit<AuthorizedReply, 'v' | 'rid' | 'status' | 'jwe'> {
  return {
    access_token: token.access_token,
    token_type: token.token_type,
    ...(token.expires_in !== undefined && { expires_in: token.expires_in }),
    ...(token.scope !== undefined && { scope: token.scope }),
    ...(token.id_token !== undefined && { id_token: token.id_token }),
  };
}

/** `authorized` with the token fields, or with only `jwe` (the fields encrypted to `jwk`) when the device sent a key. */
export async function authorizedReply(
  rid: string,
  token: TokenSet,
  jwk: PublicJwk | undefined,
): Promise<AuthorizedReply> {
  const fields = tokenFields(token);
  if (jwk !== undefined) return { v: 1, rid, status: 'authorized', jwe: await encryptForDevice(jwk, fields) };
  return { v: 1, rid, status: 'authorized', ...fields };
}

/**
 * Where the person goes: the upstream's page (relay) or the gateway's own `/device` page under `publicUrl` (bridge).
 * The bridge's complete link (the QR, RFC 8628 §3.3.1) carries the user code and its proof `k`
 * (src/core/scan-link.ts), so a scan opens the confirm page without going through the failed-entry limits.
 */
export function verificationLinks(
  flow: Flow,
  publicUrl: string,
  keys: Keys,
): { uri: string; complete?: string } {
  if (flow.mode === 'device') {
    const complete = flow.secrets.verificationUriComplete;
    return { uri: flow.verificationUri, ...(complete !== undefined && { complete }) };
  }
  const uri = `${publicUrl}/device`;
  const code = flow.secrets.userCode;
  const k = scanProof(keys, code.replaceAll('-', ''), flow.expiresAt);
  return { uri, complete: `${uri}?user_code=${encodeURIComponent(code)}&k=${k}` };
}

/** The device's view of a flow at `now`: pending, authorized or error. */
export async function renderReply(
  flow: Flow,
  now: number,
  publicUrl: string,
  keys: Keys,
): Promise<DeviceReply> {
  if (flow.state === 'pending') {
    const links = verificationLinks(flow, publicUrl, keys);
    return {
      v: 1,
      rid: flow.rid,
      status: 'pending',
      user_code: flow.secrets.userCode,
      verification_uri: links.uri,
      ...(links.complete !== undefined && { verification_uri_complete: links.complete }),
      expires_in: secondsLeft(flow, now),
    };
  }
  const error = flowError(flow, now);
  if (error === undefined && flow.state === 'authorized' && flow.secrets.token !== undefined) {
    try {
      return await authorizedReply(flow.rid, flow.secrets.token, flow.jwk);
    } catch (err) {
      // A flow that became authorized with a key that fails now (stored by an older gateway, whose checks were
      // weaker): one error view, which is delivered like any result, rather than a delivery that throws forever.
      return errorReply(unusableKey(err), flow.rid);
    }
  }
  return errorReply(error ?? serverError('the request failed'), flow.rid);
}

export interface RepliesDeps {
  channel: ReplyChannel;
  /** the effective public base URL (no trailing slash) */
  publicUrl: string;
  /** signs the proof in the bridge's complete link */
  keys: Keys;
  metrics: Metrics;
  log: Logger;
}

/** Renders and sends replies; counts what was sent and logs what was not (never the reply itself). */
export class Replies {
  readonly #d: RepliesDeps;

  constructor(deps: RepliesDeps) {
    this.#d = deps;
  }

  /** See {@link renderReply}. */
  render(flow: Flow, now: number): Promise<DeviceReply> {
    return renderReply(flow, now, this.#d.publicUrl, this.#d.keys);
  }

  /**
   * A result is a result only if the device can receive it: when `event` brings a token that the flow's key cannot be
   * encrypted to (a key stored by an older gateway, or a failure `req/authorize` did not foresee), or whose reply is
   * larger than the packet limit (`ReplyChannel.oversize`), the event becomes a `fail` (`invalid_request`,
   * `reply_too_large`), so the flow finishes with that error — one reply, no delivery retries — and no grant is kept
   * for a device no refreshed token could be sent to. Any other event comes back as it is.
   */
  async deliverable(flow: Flow, event: FlowEvent): Promise<FlowEvent> {
    const token = tokenOf(event);
    if (token === undefined || flow.state !== 'pending') return event;
    const refused = await this.#undeliverable(flow, token);
    if (refused === undefined) return event;
    return { type: 'fail', code: refused.code, description: refused.description };
  }

  /** Why a token cannot reach the device, or `undefined` when it can. */
  async #undeliverable(flow: Flow, token: TokenSet): Promise<OAuthError | undefined> {
    if (flow.jwk !== undefined) {
      try {
        await checkDeviceKey(flow.jwk);
      } catch (err) {
        this.#d.log.warn({ deviceId: flow.deviceId, rid: flow.rid, err }, 'device key refused at delivery');
        return unusableKey(err);
      }
    }
    const over = this.#d.channel.oversize?.(flow.deviceId, await authorizedReply(flow.rid, token, flow.jwk));
    if (over === undefined) return undefined;
    this.#d.log.warn(
      { deviceId: flow.deviceId, rid: flow.rid, ...over },
      'token reply over the packet limit',
    );
    return replyTooLarge(
      `the token reply (${over.size} bytes) is larger than the maximum MQTT packet size (${over.limit} bytes); ` +
        'the token was discarded. Authorize again with a smaller scope (a jwk makes the reply larger, not smaller), ' +
        'or have the limit raised',
    );
  }

  /**
   * Publishes a reply; `false` when the broker could not take it (the device can ask again with `req/status`).
   * `route` only for the direct answer to the request that carried it; results pushed later go to `res`.
   */
  async send(deviceId: string, reply: DeviceReply, route?: ReplyRoute): Promise<boolean> {
    try {
      await this.#d.channel.publish(deviceId, reply, route);
      this.#d.metrics.inc('devicegate_replies_total', { status: reply.status });
      return true;
    } catch (err) {
      this.#d.log.warn({ deviceId, err }, 'reply not delivered');
      return false;
    }
  }
}

/** The token set an event brings (a bridge `token`, or a relay poll's `token` outcome), if any. */
export function tokenOf(event: FlowEvent): TokenSet | undefined {
  if (event.type === 'token') return event.token;
  return event.type === 'poll' && event.outcome.kind === 'token' ? event.outcome.token : undefined;
}

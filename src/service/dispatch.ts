/**
 * Where every device request enters the flow service: the per-device throttle, parsing (`src/core/protocol.ts`),
 * then one handler per action. Nothing escapes: a failure becomes an error reply to the same device, with the
 * request's `rid` when it can be recovered.
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { FlowEvent } from '../core/engine.ts';
import {
  OAuthError,
  UnavailableError,
  invalidRequest,
  invalidScope,
  serverError,
  slowDown,
  temporarilyUnavailable,
  unauthorizedClient,
} from '../core/errors.ts';
import type { TokenSet } from '../core/flow.ts';
import { type AuthorizeRequest, errorReply, parseDeviceRequest, salvageRid } from '../core/protocol.ts';
import { audit } from '../observability/audit.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Versioned } from '../store/types.ts';
import type { IncomingRequest } from '../transport/types.ts';
import type { RefreshingUpstream } from '../upstream/types.ts';
import type { GrantStore } from './grants.ts';
import { checkDeviceKey, unusableKey } from './jwe.ts';
import { type Replies, authorizedReply } from './replies.ts';
import { type FlowStarter, RETRY_AFTER_SECONDS } from './starter.ts';
import type { DeviceThrottle } from './throttle.ts';
import type { FlowUpdater } from './updater.ts';

export interface DispatcherDeps {
  clock: Clock;
  /** the scope asked for when a device names none */
  defaultScope: string;
  allowedScopes: ReadonlySet<string>;
  starter: FlowStarter;
  updater: FlowUpdater;
  grants: GrantStore;
  /** redeems kept refresh tokens (`req/refresh`) */
  upstream: RefreshingUpstream;
  replies: Replies;
  /** whether the device is revoked (its requests are answered `unauthorized_client`); throws when unknown */
  isRevoked: (deviceId: string) => Promise<boolean>;
  /** per-device request limit; none when the configured rate is 0 */
  throttle: DeviceThrottle | undefined;
  metrics: Metrics;
  log: Logger;
}

/** What a revoked device is told (src/service/revocations.ts). */
export const REVOKED = 'this device has been revoked; ask its operator to restore it';

export class DeviceRequests {
  readonly #d: DispatcherDeps;

  constructor(deps: DispatcherDeps) {
    this.#d = deps;
  }

  /** Entry point of every device request (a `DeviceRequestHandler`). Never throws. */
  readonly handle = async (req: IncomingRequest): Promise<void> => {
    const { metrics } = this.#d;
    const started = performance.now();
    let rid: string | undefined;
    try {
      const { throttle } = this.#d;
      const now = this.#d.clock.now();
      const wait = throttle?.take(req.deviceId, now) ?? 0;
      if (wait > 0) {
        // answered once per throttle window (src/service/throttle.ts); the rest of a flood goes unanswered
        if (throttle?.answerRefusal(req.deviceId, now, wait) !== true) {
          metrics.inc('devicegate_requests_dropped_total', { reason: 'throttled' });
          return;
        }
        rid = salvageRid(req.payload);
        throw slowDown('too many requests from this device; wait before sending more', wait);
      }
      if (req.action === undefined) {
        rid = salvageRid(req.payload);
        throw invalidRequest(
          `unknown request "${req.rawAction.slice(0, 32)}"; use authorize, status, ack, cancel or refresh`,
        );
      }
      let parsed;
      try {
        parsed = parseDeviceRequest(req.action, req.payload);
      } catch (err) {
        rid = salvageRid(req.payload);
        throw err;
      }
      rid = parsed.body.rid;
      // after parsing, so that every answer (a store failure's included) carries the rid
      if (await this.#d.isRevoked(req.deviceId)) throw unauthorizedClient(REVOKED);
      metrics.inc('devicegate_device_requests_total', { action: req.action });
      switch (parsed.action) {
        case 'authorize':
          await this.#authorize(req, parsed.body);
          break;
        case 'status':
        case 'ack':
        case 'cancel':
          await this.#event(req, parsed.body.rid, { type: parsed.action });
          break;
        case 'refresh':
          await this.#refresh(req, parsed.body.rid);
          break;
      }
    } catch (err) {
      const oauth = this.#asOAuthError(err, { deviceId: req.deviceId, action: req.rawAction });
      metrics.inc('devicegate_device_errors_total', { error: oauth.code });
      await this.#d.replies.send(req.deviceId, errorReply(oauth, rid), req.replyTo);
    } finally {
      metrics.observe('devicegate_device_request_seconds', (performance.now() - started) / 1000);
    }
  };

  /** `req/authorize`: a new flow, or — for a rid already known — the current view of that flow. */
  async #authorize(req: IncomingRequest, body: AuthorizeRequest): Promise<void> {
    const { allowedScopes, starter, replies } = this.#d;
    const scope = body.scope ?? this.#d.defaultScope;
    const refused = scope.split(' ').filter((s) => !allowedScopes.has(s));
    if (refused.length > 0) throw invalidScope(`scope not allowed: ${refused.join(' ')}`);
    if (body.jwk !== undefined) await checkDeviceKey(body.jwk);

    const started = await starter.start({
      deviceId: req.deviceId,
      rid: body.rid,
      scope,
      ...(body.jwk !== undefined && { jwk: body.jwk }),
      ...(body.device !== undefined && { device: body.device }),
      ...(req.remoteAddress !== undefined && { network: req.remoteAddress }),
    });
    if (started.status === 'exists') {
      await this.#event(req, body.rid, { type: 'status' }, started.known);
      return;
    }
    const { flow } = started;
    this.#d.metrics.inc('devicegate_flows_started_total', { mode: flow.mode });
    audit(this.#d.log, 'flow.started', {
      deviceId: flow.deviceId,
      rid: flow.rid,
      mode: flow.mode,
      ...(req.remoteAddress !== undefined && { network: req.remoteAddress }),
    });
    await replies.send(flow.deviceId, await replies.render(flow, flow.createdAt), req.replyTo);
  }

  /**
   * Applies a device-originated event; the updater answers the device (on the request's reply route) as the engine
   * says, refusals are thrown.
   */
  async #event(req: IncomingRequest, rid: string, event: FlowEvent, known?: Versioned): Promise<void> {
    const { deviceId, replyTo } = req;
    const r = await this.#d.updater.update({ deviceId, rid, event, known, replyTo });
    if (r.status === 'missing') {
      throw new OAuthError(
        'expired_token',
        `no request ${rid} is known (it may have expired); start a new one`,
      );
    }
    if (r.status === 'ok' && r.transition.reject !== undefined) throw r.transition.reject;
  }

  /**
   * `req/refresh`: a fresh access token from the device's grant (RFC 6749 §6). The grant is put back (rotated when
   * the upstream rotates) unless the upstream refuses it: then it is dropped with an audit line — as a possible theft
   * when the refused token came from a rotation (RFC 9700 §4.14). While the upstream is unreachable it is kept.
   */
  async #refresh(req: IncomingRequest, rid: string): Promise<void> {
    const { grants, upstream } = this.#d;
    const { deviceId } = req;
    const grant = await grants.take(deviceId);
    if (grant === undefined) {
      throw new OAuthError('expired_token', 'no authorization is kept for this device; start a new one');
    }
    // A grant whose key the gateway will not encrypt to (kept by an older gateway) is dropped — it stays taken —
    // before its refresh token is spent: no refreshed token could ever reach the device.
    if (grant.jwk !== undefined) {
      try {
        await checkDeviceKey(grant.jwk);
      } catch (err) {
        throw unusableKey(err);
      }
    }
    let token: TokenSet;
    try {
      token = await upstream.refresh(grant.refreshToken);
    } catch (err) {
      // Only the upstream's word that the grant is dead (invalid_grant → expired_token) drops it. Anything else — the
      // upstream unreachable, or refusing the gateway itself (invalid_client after a misconfiguration) — says nothing
      // about the person's authorization, so the grant is kept for the next refresh.
      if (err instanceof OAuthError && err.code === 'expired_token') {
        grants.audit(deviceId, grant.rotated === true ? 'rotated_token_refused' : 'refresh_refused');
      } else {
        await grants.putBack(deviceId, grant);
      }
      throw err;
    }
    const { refresh_token: rotated, ...rest } = token;
    await grants.putBack(deviceId, grant, rotated);
    this.#d.metrics.inc('devicegate_refreshes_total');
    audit(this.#d.log, 'grant.refreshed', { deviceId, rid });
    await this.#d.replies.send(deviceId, await authorizedReply(rid, rest, grant.jwk), req.replyTo);
  }

  #asOAuthError(err: unknown, ctx: Record<string, string>): OAuthError {
    if (err instanceof OAuthError) return err;
    if (err instanceof UnavailableError) {
      this.#d.log.warn({ ...ctx, dependency: err.dependency, err }, 'dependency unavailable');
      return temporarilyUnavailable(
        `the gateway's ${err.dependency} is unavailable; try again`,
        RETRY_AFTER_SECONDS,
      );
    }
    this.#d.log.error({ ...ctx, err }, 'request failed');
    return serverError('the gateway failed to handle the request');
  }
}

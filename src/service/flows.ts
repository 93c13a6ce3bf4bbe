/**
 * The flow service: where device requests, upstream answers and the person's decisions meet the engine and the
 * store. Every state change is read → `apply` (pure) → compare-and-set; effects (replies to the device, the schedule)
 * follow a successful write only.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { Config } from '../config/index.ts';
import type { Flow, PublicJwk, TokenSet } from '../core/flow.ts';
import { stateRank } from '../core/flow.ts';
import { type FlowEvent, type Transition, apply, dueAt, flowError, secondsLeft } from '../core/engine.ts';
import {
  OAuthError,
  UnavailableError,
  invalidRequest,
  invalidScope,
  serverError,
  slowDown,
  temporarilyUnavailable,
} from '../core/errors.ts';
import {
  type AuthorizeRequest,
  type DeviceReply,
  errorReply,
  parseDeviceRequest,
  salvageRid,
} from '../core/protocol.ts';
import type { CreateResult, FlowStore, Versioned } from '../store/types.ts';
import type { DeviceTransport, IncomingRequest } from '../transport/types.ts';
import type { RelayUpstream, Upstream } from '../upstream/types.ts';
import { formatUserCode, generateUserCode } from '../core/codes.ts';
import type { Keys } from '../core/crypto.ts';
import { checkDeviceKey, encryptForDevice } from './jwe.ts';
import type { Metrics } from '../observability/metrics.ts';
import { DeviceThrottle } from './throttle.ts';
import { describe } from '../observability/log.ts';

/** Seconds a device is told to wait when a dependency is down. */
export const RETRY_AFTER_SECONDS = 5;
/** Attempts of one compare-and-set loop before giving up with `server_error`. */
const MAX_CAS_ATTEMPTS = 8;
/** Attempts at drawing a user code that no live flow holds. */
const MAX_CODE_ATTEMPTS = 8;

export interface FlowServiceDeps {
  config: Config;
  /** the effective public base URL (no trailing slash) */
  publicUrl: string;
  clock: Clock;
  store: FlowStore;
  upstream: Upstream;
  keys: Keys;
  log: Logger;
  metrics: Metrics;
  /** set by the gateway once the transport exists */
  transport?: DeviceTransport;
  /** per-device request limit (default: from `config.deviceRate`) */
  throttle?: DeviceThrottle;
}

export type MutateResult =
  | { status: 'ok'; transition: Transition; version: number }
  | { status: 'missing' }
  | { status: 'lease_lost' };

export class FlowService {
  readonly #d: FlowServiceDeps;
  #transport: DeviceTransport | undefined;
  readonly #throttle: DeviceThrottle | undefined;

  constructor(deps: FlowServiceDeps) {
    this.#d = deps;
    this.#transport = deps.transport;
    const rate = deps.config.deviceRate;
    this.#throttle =
      deps.throttle ??
      (rate > 0 ? new DeviceThrottle({ burst: 10 * rate, perSecond: rate, maxDevices: 100_000 }) : undefined);
  }

  set transport(t: DeviceTransport) {
    this.#transport = t;
  }

  get config(): Config {
    return this.#d.config;
  }

  /** Entry point of every device request. Never throws: failures become an error reply to the same device. */
  readonly handleRequest = async (req: IncomingRequest): Promise<void> => {
    const { metrics } = this.#d;
    const started = performance.now();
    let rid: string | undefined;
    try {
      const wait = this.#throttle?.take(req.deviceId, this.#d.clock.now()) ?? 0;
      if (wait > 0) {
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
      metrics.inc('devicegate_device_requests_total', { action: req.action });
      switch (parsed.action) {
        case 'authorize':
          await this.#authorize(req, parsed.body);
          break;
        case 'status':
          await this.#event(req.deviceId, parsed.body.rid, { type: 'status' });
          break;
        case 'ack':
          await this.#event(req.deviceId, parsed.body.rid, { type: 'ack' });
          break;
        case 'cancel':
          await this.#event(req.deviceId, parsed.body.rid, { type: 'cancel' });
          break;
        case 'refresh':
          await this.#refresh(req.deviceId, parsed.body.rid);
          break;
      }
    } catch (err) {
      const oauth = this.#asOAuthError(err, { deviceId: req.deviceId, action: req.rawAction });
      metrics.inc('devicegate_device_errors_total', { error: oauth.code });
      await this.#send(req.deviceId, errorReply(oauth, rid));
    } finally {
      metrics.observe('devicegate_device_request_seconds', (performance.now() - started) / 1000);
    }
  };

  async #authorize(req: IncomingRequest, body: AuthorizeRequest): Promise<void> {
    const { config, store, clock } = this.#d;
    const scope = body.scope ?? config.defaultScope;
    const refused = scope.split(' ').filter((s) => !config.allowedScopes.has(s));
    if (refused.length > 0) throw invalidScope(`scope not allowed: ${refused.join(' ')}`);
    if (body.jwk !== undefined) await checkDeviceKey(body.jwk);

    // The same rid again is idempotent: answer with the flow that exists. Relay mode looks first, so a repeat costs
    // no upstream call; bridge mode lets the create answer `exists` (one store round trip less per new flow).
    if (this.#d.upstream.kind === 'device') {
      const existing = await this.#get(req.deviceId, body.rid);
      if (existing !== undefined) {
        await this.#event(req.deviceId, body.rid, { type: 'status' }, undefined, existing);
        return;
      }
    }

    const now = clock.now();
    const base = {
      deviceId: req.deviceId,
      rid: body.rid,
      state: 'pending' as const,
      scope,
      createdAt: now,
      ...(body.jwk !== undefined && { jwk: body.jwk }),
      ...(body.device !== undefined && { device: body.device }),
      ...(req.remoteAddress !== undefined && { network: req.remoteAddress }),
    };
    let flow: Flow;
    let created: CreateResult;
    if (this.#d.upstream.kind === 'device') {
      flow = await this.#startRelay(this.#d.upstream, base, scope, now);
      const relayFlow = flow;
      created = await this.#store(() =>
        store.create(relayFlow, {
          now,
          maxLive: config.maxFlowsPerDevice,
          due: dueAt(relayFlow, now, config.leaseMs),
        }),
      );
    } else {
      // Bridge: draw a user code and create the flow with the code reserved in the same store operation; a code
      // another live flow holds (a collision, ~N/20^8) is drawn again.
      const expiresAt = now + config.codeTtlSeconds * 1000;
      let attempt = 0;
      for (;;) {
        const canonical = generateUserCode();
        const bridgeFlow: Flow = {
          ...base,
          mode: 'authorization_code',
          expiresAt,
          interval: config.pollIntervalSeconds,
          secrets: { userCode: formatUserCode(canonical) },
        };
        const userCode = { hash: this.userCodeHash(canonical), ttlMs: expiresAt - now };
        const due = dueAt(bridgeFlow, now, config.leaseMs);
        created = await this.#store(() =>
          store.create(bridgeFlow, { now, maxLive: config.maxFlowsPerDevice, due, userCode }),
        );
        flow = bridgeFlow;
        if (created.status !== 'code_taken') break;
        this.#d.metrics.inc('devicegate_user_code_collisions_total');
        if (++attempt >= MAX_CODE_ATTEMPTS)
          throw temporarilyUnavailable('no free user code; try again', RETRY_AFTER_SECONDS);
      }
    }
    switch (created.status) {
      case 'created':
        this.#d.metrics.inc('devicegate_flows_started_total', { mode: flow.mode });
        this.#d.log.debug({ deviceId: flow.deviceId, rid: flow.rid, mode: flow.mode }, 'flow started');
        await this.#send(flow.deviceId, await this.render(flow, now));
        return;
      case 'exists':
        await this.#event(req.deviceId, body.rid, { type: 'status' }, undefined, {
          flow: created.flow,
          version: created.version,
        });
        return;
      case 'code_taken': // the bridge loop above never leaves with it
        throw temporarilyUnavailable('no free user code; try again', RETRY_AFTER_SECONDS);
      case 'limit':
        throw slowDown(
          `this device already has ${config.maxFlowsPerDevice} unfinished requests; finish or cancel one first`,
          RETRY_AFTER_SECONDS,
        );
    }
  }

  async #startRelay(
    upstream: RelayUpstream,
    base: Omit<Flow, 'mode' | 'expiresAt' | 'interval' | 'secrets'>,
    scope: string,
    now: number,
  ): Promise<Flow> {
    const { config } = this.#d;
    const da = await upstream.startDeviceAuthorization(scope);
    const lifetime = Math.min(da.expiresIn, config.codeTtlSeconds);
    return {
      ...base,
      mode: 'device',
      expiresAt: now + lifetime * 1000,
      interval: da.interval,
      nextPollAt: now + da.interval * 1000,
      verificationUri: da.verificationUri,
      secrets: {
        userCode: da.userCode,
        deviceCode: da.deviceCode,
        ...(da.verificationUriComplete !== undefined && {
          verificationUriComplete: da.verificationUriComplete,
        }),
      },
    };
  }

  /** The keyed hash a canonical user code is stored under. */
  userCodeHash(canonical: string): string {
    return this.#d.keys.lookupHash('user_code', canonical);
  }

  /** Reads a flow; store trouble becomes `UnavailableError`. */
  async #get(deviceId: string, rid: string): Promise<Versioned | undefined> {
    return this.#store(() => this.#d.store.get(deviceId, rid));
  }

  /** Applies a device-originated event and answers the device as the engine says. */
  async #event(deviceId: string, rid: string, event: FlowEvent, leaseToken?: string, known?: Versioned) {
    const r = await this.mutate(deviceId, rid, event, leaseToken, known);
    if (r.status === 'missing') {
      throw new OAuthError(
        'expired_token',
        `no request ${rid} is known (it may have expired); start a new one`,
      );
    }
    if (r.status === 'lease_lost') return;
    if (r.transition.reject !== undefined) throw r.transition.reject;
  }

  /**
   * Read → apply → compare-and-set, retried on conflicts. After a successful write: updates the schedule and, when
   * the engine says so, sends the device the flow's current view (a finished flow is then marked delivered).
   * With `leaseToken` the write only lands while that lease is held.
   */
  async mutate(
    deviceId: string,
    rid: string,
    eventIn: FlowEvent,
    leaseToken?: string,
    known?: Versioned,
  ): Promise<MutateResult> {
    let event = eventIn;
    const { store, clock, config } = this.#d;
    let current = known;
    let kept = false;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      current ??= await this.#get(deviceId, rid);
      if (current === undefined) return { status: 'missing' };
      if (!kept) {
        // A refresh token goes into the device's grant record (sealed), never into the flow or to the device.
        event = await this.#keepRefreshToken(current.flow, event);
        kept = true;
      }
      const now = clock.now();
      const t = apply(current.flow, event, now);
      let version = current.version;
      if (t.changed) {
        const snapshot = current;
        const written = await this.#store(() =>
          store.update(t.flow, snapshot.version, leaseToken === undefined ? { now } : { now, leaseToken }),
        );
        if (written.status === 'conflict' || written.status === 'regress') {
          current = undefined;
          continue;
        }
        if (written.status !== 'ok') return { status: written.status };
        version = written.version;
        await this.#store(() => store.schedule(deviceId, rid, dueAt(t.flow, now, config.leaseMs)));
        if (stateRank(t.flow.state) > stateRank(snapshot.flow.state)) this.#countFinish(t.flow);
      }
      if (t.notify && leaseToken !== undefined && !t.changed) {
        // Nothing was written, so nothing proved the lease is still ours: check before publishing, or a paused
        // instance could push a result that another one has delivered already.
        if (!(await this.#store(() => store.acquireLease(deviceId, rid, leaseToken, now, config.leaseMs)))) {
          return { status: 'lease_lost' };
        }
      }
      if (t.notify) version = await this.#notify(t.flow, version, now, leaseToken);
      return { status: 'ok', transition: t, version };
    }
    throw serverError('the request could not be updated; try again');
  }

  /** The store key of a device's grant (its refresh token): a keyed hash, so the key does not name the device. */
  #grantKey(deviceId: string): string {
    return this.#d.keys.lookupHash('grant', deviceId);
  }

  /**
   * When a token set with a refresh token arrives, keeps it as the device's grant (sealed, for
   * `DEVICEGATE_GRANT_TTL`) and returns the event without it. With a TTL of 0 the refresh token is dropped.
   */
  async #keepRefreshToken(flow: Flow, event: FlowEvent): Promise<FlowEvent> {
    const token =
      event.type === 'token'
        ? event.token
        : event.type === 'poll' && event.outcome.kind === 'token'
          ? event.outcome.token
          : undefined;
    if (token?.refresh_token === undefined) return event;
    const { refresh_token: refreshToken, ...rest } = token;
    const ttl = this.#d.config.grantTtlSeconds;
    if (ttl > 0 && flow.state === 'pending') {
      const grant: Grant = {
        refreshToken,
        scope: rest.scope ?? flow.scope,
        ...(flow.jwk !== undefined && { jwk: flow.jwk }),
      };
      const sealed = this.#d.keys.seal(JSON.stringify(grant), `grant/${flow.deviceId}`);
      await this.#store(() => this.#d.store.putOnce(this.#grantKey(flow.deviceId), sealed, ttl * 1000));
    }
    return event.type === 'token'
      ? { ...event, token: rest }
      : { type: 'poll', outcome: { kind: 'token', token: rest } };
  }

  /**
   * `req/refresh`: a fresh access token from the device's grant (RFC 6749 §6). The grant is taken atomically, so two
   * concurrent refreshes never both redeem the same refresh token; it is put back (rotated when the upstream
   * rotates) unless the upstream says it is dead.
   */
  async #refresh(deviceId: string, rid: string): Promise<void> {
    const { store, keys, upstream, config } = this.#d;
    const key = this.#grantKey(deviceId);
    const sealed = await this.#store(() => store.takeOnce(key));
    if (sealed === undefined) {
      throw new OAuthError('expired_token', 'no authorization is kept for this device; start a new one');
    }
    const grant = JSON.parse(keys.open(sealed, `grant/${deviceId}`)) as Grant;
    const putBack = (g: Grant) =>
      this.#store(() =>
        store.putOnce(key, keys.seal(JSON.stringify(g), `grant/${deviceId}`), config.grantTtlSeconds * 1000),
      );
    let token: TokenSet;
    try {
      token = await upstream.refresh(grant.refreshToken);
    } catch (err) {
      if (err instanceof UnavailableError) await putBack(grant);
      throw err;
    }
    const { refresh_token: rotated, ...rest } = token;
    await putBack({ ...grant, refreshToken: rotated ?? grant.refreshToken });
    this.#d.metrics.inc('devicegate_refreshes_total');
    const fields = tokenFields(rest);
    await this.#send(
      deviceId,
      grant.jwk !== undefined
        ? { v: 1, rid, status: 'authorized', jwe: await encryptForDevice(grant.jwk, fields) }
        : { v: 1, rid, status: 'authorized', ...fields },
    );
  }

  /** Re-derives the flow's due time from its state (the scheduler visited it and found nothing to do). */
  async reschedule(flow: Flow): Promise<void> {
    const now = this.#d.clock.now();
    await this.#store(() =>
      this.#d.store.schedule(flow.deviceId, flow.rid, dueAt(flow, now, this.#d.config.leaseMs)),
    );
  }

  /** Sends the device the flow's view; marks a finished flow delivered once the broker took it. */
  async #notify(flow: Flow, version: number, now: number, leaseToken?: string): Promise<number> {
    const reply = await this.render(flow, now);
    const sent = await this.#send(flow.deviceId, reply);
    if (!sent || stateRank(flow.state) !== 1 || flow.deliveredAt !== undefined) return version;
    const t = apply(flow, { type: 'delivered' }, now);
    const written = await this.#store(() =>
      this.#d.store.update(t.flow, version, leaseToken === undefined ? { now } : { now, leaseToken }),
    );
    if (written.status !== 'ok') return version;
    if (flow.state === 'authorized') {
      this.#d.metrics.observe(
        'devicegate_approval_to_device_seconds',
        Math.max(0, (this.#d.clock.now() - (flow.approvedAt ?? flow.createdAt)) / 1000),
      );
    }
    await this.#store(() =>
      this.#d.store.schedule(flow.deviceId, flow.rid, dueAt(t.flow, now, this.#d.config.leaseMs)),
    );
    return written.version;
  }

  #countFinish(flow: Flow): void {
    this.#d.metrics.inc('devicegate_flows_finished_total', { state: flow.state });
    this.#d.log.info(
      { deviceId: flow.deviceId, rid: flow.rid, state: flow.state, error: flow.error?.code },
      'flow finished',
    );
  }

  /** The device's view of a flow: pending, authorized (as JWE when it sent a key) or error. */
  async render(flow: Flow, now: number): Promise<DeviceReply> {
    if (flow.state === 'pending') {
      const links = this.verificationLinks(flow);
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
    if (flow.state === 'authorized' && flow.secrets.token !== undefined) {
      const fields = tokenFields(flow.secrets.token);
      if (flow.jwk !== undefined) {
        return { v: 1, rid: flow.rid, status: 'authorized', jwe: await encryptForDevice(flow.jwk, fields) };
      }
      return { v: 1, rid: flow.rid, status: 'authorized', ...fields };
    }
    return errorReply(flowError(flow) ?? serverError('the request failed'), flow.rid);
  }

  /** Where the person goes: the upstream's page (relay) or the gateway's own `/device` page (bridge). */
  verificationLinks(flow: Flow): { uri: string; complete?: string } {
    if (flow.mode === 'device') {
      return {
        uri: flow.verificationUri ?? '',
        ...(flow.secrets.verificationUriComplete !== undefined && {
          complete: flow.secrets.verificationUriComplete,
        }),
      };
    }
    const uri = `${this.#d.publicUrl}/device`;
    return { uri, complete: `${uri}?user_code=${encodeURIComponent(flow.secrets.userCode)}` };
  }

  /** Publishes a reply; `false` when the broker could not take it (the device can ask again with `req/status`). */
  async #send(deviceId: string, reply: DeviceReply): Promise<boolean> {
    const transport = this.#transport;
    if (transport === undefined) return false;
    try {
      await transport.publish(deviceId, reply);
      this.#d.metrics.inc('devicegate_replies_total', { status: reply.status });
      return true;
    } catch (err) {
      this.#d.log.warn({ deviceId, err: describe(err) }, 'reply not delivered');
      return false;
    }
  }

  /** Runs a store call; any failure of the store itself becomes `UnavailableError`. */
  async #store<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (err instanceof OAuthError || err instanceof UnavailableError) throw err;
      throw new UnavailableError('store', 'the store failed', { cause: err });
    }
  }

  #asOAuthError(err: unknown, ctx: Record<string, string>): OAuthError {
    if (err instanceof OAuthError) return err;
    if (err instanceof UnavailableError) {
      this.#d.log.warn(
        { ...ctx, dependency: err.dependency, err: describe(err.cause ?? err) },
        'dependency unavailable',
      );
      return temporarilyUnavailable(
        `the gateway's ${err.dependency} is unavailable; try again`,
        RETRY_AFTER_SECONDS,
      );
    }
    this.#d.log.error({ ...ctx, err: describe(err) }, 'request failed');
    return serverError('the gateway failed to handle the request');
  }

  /** A random lease token, prefixed with this process's id so operators (and tests) can see who holds a lease. */
  static leaseToken(): string {
    return `${process.pid}.${randomBytes(12).toString('base64url')}`;
  }
}

/** What the gateway keeps per device after an authorization with a refresh token. Stored sealed. */
interface Grant {
  refreshToken: string;
  scope: string;
  jwk?: PublicJwk;
}

function tokenFields(
  token: TokenSet,
): Omit<Extract<DeviceReply, { status: 'authorized' }>, 'v' | 'rid' | 'status'> {
  return {
    access_token: token.access_token,
    token_type: token.token_type,
    ...(token.expires_in !== undefined && { expires_in: token.expires_in }),
    ...(token.scope !== undefined && { scope: token.scope }),
    ...(token.id_token !== undefined && { id_token: token.id_token }),
  };
}

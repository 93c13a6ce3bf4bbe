/**
 * The upstream OAuth client: picks the mode's upstream (./relay.ts or ./bridge.ts) and owns discovery
 * (./discovery.ts). oauth4webapi does every exchange and checks every answer (./exchange.ts); the gateway only adds
 * deadlines and maps answers to its errors as data (./errors.ts):
 * - an OAuth error answer becomes an `OAuthError` (or a `PollOutcome`) with one of our codes and a fixed, safe
 *   description: upstream bodies and `error_description`s are never passed on;
 * - a timeout, connection error, 5xx, 429 or non-OAuth answer (HTML, a redirect, a malformed body) means the upstream is
 *   unavailable: `UnavailableError('upstream')`, or `{kind: 'unreachable'}` when polling.
 * Device codes, codes, verifiers and tokens are never logged.
 */
import type { Logger } from 'pino';
import { type Clock, type Timers, systemClock, systemTimers } from '../core/clock.ts';
import type { UpstreamMode } from '../core/flow.ts';
import { bridgeUpstream } from './bridge.ts';
import { type ClientAuthMethod, type ClientCredentials, type SigningKey, clientAuth } from './client-auth.ts';
import {
  type ConfiguredEndpoints,
  ConfiguredMetadata,
  Discovery,
  type MetadataProvider,
} from './discovery.ts';
import type { HttpContext } from './exchange.ts';
import { acceptingJson } from './deviations.ts';
import { boundedFetch, fromFetch } from './http.ts';
import { relayUpstream } from './relay.ts';
import type { UpstreamContext } from './tokens.ts';
import type { BridgeUpstream, RelayUpstream, Upstream, UpstreamStatus } from './types.ts';

export interface UpstreamOptions {
  issuer: string;
  clientId: string;
  /** for `client_secret_basic` (the default with a secret) and `client_secret_post` */
  clientSecret?: string;
  /** default: `client_secret_basic` with a secret, `none` (a public client) without */
  authMethod?: ClientAuthMethod;
  /** `private_key_jwt`: the signing key */
  clientKey?: SigningKey;
  /** set: the upstream's metadata is built from these (./discovery.ts `ConfiguredMetadata`), nothing is discovered */
  endpoints?: ConfiguredEndpoints;
  mode: UpstreamMode;
  /** bridge mode: the exact redirect URI registered at the upstream */
  redirectUri: string;
  /** deadline for one HTTP exchange, body included (ms) */
  timeoutMs: number;
  /** allow plain-http endpoints (oauth4webapi `[allowInsecureRequests]`) */
  allowInsecure: boolean;
  log: Logger;
  /** poll interval (s) when the upstream sends none; default 5 (RFC 8628 §3.2) */
  defaultIntervalSeconds?: number;
  /** replaces the built-in HTTP client (undici, no redirects, 256 KiB cap); redirects are never followed */
  fetch?: typeof fetch;
  /** for `Retry-After` dates; default the system clock */
  clock?: Clock;
  /** for deadlines and discovery retries; default the Node.js timers */
  timers?: Timers;
}

export interface UpstreamClient<U extends Upstream = Upstream> {
  /** The relay or bridge interface, by `mode`. Its methods throw `UnavailableError` until discovery succeeded. */
  readonly upstream: U;
  /**
   * Begins discovery in the background, retrying after 0.5, 1, 2, 5 and 10 s (then every 10 s) and logging each
   * failure with the wait, until it succeeds or {@link close} is called. Call once.
   */
  start(): void;
  /** Resolves on the first successful discovery; rejects with `UnavailableError` if closed before that. */
  ready(): Promise<void>;
  /**
   * One discovery attempt: fetches the upstream's metadata (OpenID Connect discovery, else RFC 8414) and checks that it
   * has what the mode needs. Throws `UnavailableError('upstream')` with a readable reason.
   */
  discover(): Promise<void>;
  /** Whether discovery succeeded; the detail names the endpoints or the last discovery error. */
  status(): UpstreamStatus;
  /** The authorize endpoint once known (discovered or configured); `undefined` before. */
  authorizationEndpoint(): string | undefined;
  /** Cancels the pending discovery retry. */
  close(): void;
}

/** Builds the upstream client for one issuer and mode. Nothing is fetched until {@link UpstreamClient.start}. */
export function createUpstream(o: UpstreamOptions & { mode: 'device' }): UpstreamClient<RelayUpstream>;
export function createUpstream(
  o: UpstreamOptions & { mode: 'authorization_code' },
): UpstreamClient<BridgeUpstream>;
export function createUpstream(o: UpstreamOptions): UpstreamClient;
export function createUpstream(o: UpstreamOptions): UpstreamClient {
  const http: HttpContext = {
    fetch: acceptingJson(o.fetch !== undefined ? fromFetch(o.fetch) : boundedFetch()),
    timeoutMs: o.timeoutMs,
    allowInsecure: o.allowInsecure,
    clock: o.clock ?? systemClock,
    timers: o.timers ?? systemTimers,
    log: o.log,
  };
  const discovery: MetadataProvider =
    o.endpoints === undefined
      ? new Discovery({ issuer: o.issuer, mode: o.mode, http })
      : new ConfiguredMetadata({
          issuer: o.issuer,
          mode: o.mode,
          endpoints: o.endpoints,
          allowInsecure: o.allowInsecure,
        });
  const ctx: UpstreamContext = {
    ...http,
    client: { client_id: o.clientId },
    clientAuth: clientAuth(credentials(o)),
    metadata: discovery,
  };
  return {
    upstream:
      o.mode === 'device' ? relayUpstream(ctx, o.defaultIntervalSeconds) : bridgeUpstream(ctx, o.redirectUri),
    start: () => discovery.start(),
    ready: () => discovery.ready(),
    discover: () => discovery.discover(),
    status: () => discovery.status(),
    authorizationEndpoint: () => discovery.current()?.authorization_endpoint,
    close: () => discovery.close(),
  };
}

/** The credentials the configured method sends (src/config/checks.ts made sure they are there). */
function credentials(o: UpstreamOptions): ClientCredentials {
  const method = o.authMethod ?? (o.clientSecret !== undefined ? 'client_secret_basic' : 'none');
  switch (method) {
    case 'none':
      return { method };
    case 'private_key_jwt':
      if (o.clientKey === undefined) throw new Error('private_key_jwt needs a client key');
      return { method, key: o.clientKey };
    default:
      if (o.clientSecret === undefined) throw new Error(`${method} needs a client secret`);
      return { method, secret: o.clientSecret };
  }
}

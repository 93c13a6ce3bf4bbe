/**
 * Finding the upstream: its metadata (OpenID Connect Discovery, else RFC 8414), checked for what the mode needs, and
 * fetched again on a backoff until it succeeds, on the injected clock's timers.
 */
import * as oauth from 'oauth4webapi';
import type { Timers, TimerHandle } from '../core/clock.ts';
import { UnavailableError } from '../core/errors.ts';
import type { UpstreamMode } from '../core/flow.ts';
import { type HttpContext, reason, withDeadline } from './exchange.ts';
import type { UpstreamStatus } from './types.ts';

/** Waits between failed discovery attempts (ms); the last one repeats until discovery succeeds. */
export const DISCOVERY_RETRY_MS: readonly number[] = [500, 1000, 2000, 5000, 10_000];

export interface DiscoveryOptions {
  issuer: string;
  mode: UpstreamMode;
  http: HttpContext;
}

/** The upstream's metadata once discovered: what the relay and bridge upstreams read it from. */
export interface MetadataSource {
  /** The metadata, or `undefined` before discovery succeeded. */
  current(): oauth.AuthorizationServer | undefined;
  /** The metadata; throws `UnavailableError('upstream')` (naming the last discovery error) before discovery succeeded. */
  require(): oauth.AuthorizationServer;
}

/** The upstream's endpoints as configured, for an upstream that publishes no metadata (GitHub). */
export interface ConfiguredEndpoints {
  deviceAuthorization?: string;
  token?: string;
  authorization?: string;
  /** RFC 7009 */
  revocation?: string;
}

/** Where the metadata comes from and whether it is there yet: discovery, or the configuration. */
export interface MetadataProvider extends MetadataSource {
  start(): void;
  ready(): Promise<void>;
  discover(): Promise<void>;
  status(): UpstreamStatus;
  close(): void;
}

/**
 * Metadata built from configured endpoints instead of discovery. The issuer stays the upstream's identity: oauth4webapi
 * checks it wherever the upstream states one (RFC 9207 `iss` on the callback, an ID token's `iss`). Checked like
 * discovered metadata (every endpoint the mode needs, over an acceptable scheme), once, by {@link discover}.
 */
export class ConfiguredMetadata implements MetadataProvider {
  readonly #as: oauth.AuthorizationServer;
  readonly #mode: UpstreamMode;
  readonly #allowInsecure: boolean;
  #checked: Error | undefined | 'ok';

  constructor(o: {
    issuer: string;
    mode: UpstreamMode;
    endpoints: ConfiguredEndpoints;
    allowInsecure: boolean;
  }) {
    const e = o.endpoints;
    this.#as = {
      issuer: o.issuer,
      ...(e.deviceAuthorization !== undefined && { device_authorization_endpoint: e.deviceAuthorization }),
      ...(e.token !== undefined && { token_endpoint: e.token }),
      ...(e.authorization !== undefined && { authorization_endpoint: e.authorization }),
      ...(e.revocation !== undefined && { revocation_endpoint: e.revocation }),
    };
    this.#mode = o.mode;
    this.#allowInsecure = o.allowInsecure;
  }

  start(): void {
    void this.discover().catch(() => undefined);
  }

  ready(): Promise<void> {
    return this.discover();
  }

  /** Checks the configured metadata; throws `UnavailableError('upstream')` naming what the mode is missing. */
  async discover(): Promise<void> {
    if (this.#checked === undefined) {
      try {
        checkMetadata(this.#as, this.#mode, this.#allowInsecure);
        this.#checked = 'ok';
      } catch (err) {
        this.#checked = err instanceof Error ? err : new Error(String(err));
      }
    }
    if (this.#checked !== 'ok') throw new UnavailableError('upstream', this.#checked.message);
  }

  status(): UpstreamStatus {
    if (this.#checked instanceof Error) return { ready: false, detail: this.#checked.message };
    return { ready: true, detail: `${describe(this.#as, this.#mode)}, configured without discovery` };
  }

  close(): void {}

  current(): oauth.AuthorizationServer | undefined {
    return this.#checked === 'ok' ? this.#as : undefined;
  }

  require(): oauth.AuthorizationServer {
    const as = this.current();
    if (as === undefined)
      throw new UnavailableError('upstream', `the configured upstream endpoints are unusable`);
    return as;
  }
}

/** Discovery of one issuer for one mode, with its retry schedule and readiness. */
export class Discovery implements MetadataProvider {
  readonly #o: DiscoveryOptions;
  readonly #issuer: URL;
  readonly #timers: Timers;
  readonly #ready: Promise<void>;
  readonly #resolve: () => void;
  readonly #reject: (err: Error) => void;
  #as: oauth.AuthorizationServer | undefined;
  #lastError: string | undefined;
  #timer: TimerHandle | undefined;
  #closed = false;

  constructor(o: DiscoveryOptions) {
    this.#o = o;
    this.#issuer = new URL(o.issuer);
    this.#timers = o.http.timers;
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    this.#ready = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Nobody has to wait for readiness: a rejection on close must not count as unhandled.
    this.#ready.catch(() => undefined);
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /**
   * Starts discovery in the background: on failure it logs the reason and the wait, and tries again after
   * {@link DISCOVERY_RETRY_MS} (then every 10 s) until it succeeds or {@link close} is called. Call once.
   */
  start(): void {
    void this.#attempt(0);
  }

  /** Resolves on the first successful discovery; rejects with `UnavailableError` if closed before that. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** Stops retrying (an attempt in flight is not waited for). */
  close(): void {
    this.#closed = true;
    this.#timers.clear(this.#timer);
    this.#reject(new UnavailableError('upstream', `closed before ${this.#o.issuer} was discovered`));
  }

  /**
   * One discovery attempt. Throws `UnavailableError('upstream')` with a readable reason; the reason stays in
   * {@link status} until an attempt succeeds.
   */
  async discover(): Promise<void> {
    try {
      const meta = await this.#fetchMetadata();
      checkMetadata(meta, this.#o.mode, this.#o.http.allowInsecure);
      this.#as = meta;
      this.#lastError = undefined;
      this.#o.http.log.info({ issuer: meta.issuer, mode: this.#o.mode }, 'upstream discovered');
      this.#resolve();
    } catch (err) {
      this.#lastError = reason(err);
      throw new UnavailableError('upstream', `discovery of ${this.#o.issuer} failed: ${this.#lastError}`, {
        cause: err,
      });
    }
  }

  /** Whether discovery succeeded; the detail names the endpoints or the last discovery error. */
  status(): UpstreamStatus {
    const as = this.#as;
    if (as === undefined)
      return { ready: false, detail: this.#lastError ?? 'discovery has not finished yet' };
    return { ready: true, detail: describe(as, this.#o.mode) };
  }

  current(): oauth.AuthorizationServer | undefined {
    return this.#as;
  }

  require(): oauth.AuthorizationServer {
    if (this.#as !== undefined) return this.#as;
    const why = this.#lastError === undefined ? '' : `: ${this.#lastError}`;
    throw new UnavailableError('upstream', `the upstream ${this.#o.issuer} is not discovered yet${why}`);
  }

  async #attempt(attempt: number): Promise<void> {
    try {
      await this.discover();
    } catch {
      if (this.#closed) return;
      const wait = DISCOVERY_RETRY_MS[Math.min(attempt, DISCOVERY_RETRY_MS.length - 1)]!;
      this.#o.http.log.warn(
        { issuer: this.#o.issuer, err: this.#lastError, retryInMs: wait },
        'upstream discovery failed',
      );
      this.#timer = this.#timers.setTimeout(() => void this.#attempt(attempt + 1), wait);
    }
  }

  /** OpenID Connect Discovery first, then RFC 8414 (RFC 8414 §5 allows both at one issuer). */
  async #fetchMetadata(): Promise<oauth.AuthorizationServer> {
    const failures: string[] = [];
    for (const algorithm of ['oidc', 'oauth2'] as const) {
      try {
        return await withDeadline(this.#o.http, async (options) => {
          const res = await oauth.discoveryRequest(this.#issuer, { ...options, algorithm });
          return await oauth.processDiscoveryResponse(this.#issuer, res);
        });
      } catch (err) {
        const name = algorithm === 'oidc' ? 'openid-configuration' : 'oauth-authorization-server';
        failures.push(`${name}: ${reason(err)}`);
      }
    }
    throw new Error(`no usable metadata (${failures.join('; ')})`);
  }
}

/** Checks that the metadata has, over an acceptable scheme, every endpoint `mode` needs. */
function checkMetadata(meta: oauth.AuthorizationServer, mode: UpstreamMode, allowInsecure: boolean): void {
  const needed =
    mode === 'device'
      ? (['device_authorization_endpoint', 'token_endpoint'] as const)
      : (['authorization_endpoint', 'token_endpoint'] as const);
  for (const name of needed) {
    const value = meta[name];
    if (typeof value !== 'string' || !URL.canParse(value)) {
      throw new Error(`the upstream has no ${name}, which ${mode} mode needs`);
    }
    const protocol = new URL(value).protocol;
    if (protocol !== 'https:' && !(protocol === 'http:' && allowInsecure)) {
      throw new Error(`the upstream's ${name} is not https`);
    }
  }
  // RFC 9700 §2.1.1: PKCE with S256; a server that lists methods must list S256 (no downgrade to `plain`).
  const methods = meta.code_challenge_methods_supported;
  if (mode === 'authorization_code' && Array.isArray(methods) && !methods.includes('S256')) {
    throw new Error('the upstream does not support PKCE with S256');
  }
}

/** The issuer and the endpoints the mode uses, for readiness. */
function describe(as: oauth.AuthorizationServer, mode: UpstreamMode): string {
  const endpoints =
    mode === 'device'
      ? `device_authorization_endpoint ${as.device_authorization_endpoint}, token_endpoint ${as.token_endpoint}`
      : `authorization_endpoint ${as.authorization_endpoint}, token_endpoint ${as.token_endpoint}`;
  return `${as.issuer} (${mode}: ${endpoints})`;
}

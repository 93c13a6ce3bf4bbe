/**
 * The built-in demo identity provider: node-oidc-provider with one confidential client, one user (`demo` / `demo`),
 * its own small sign-in and consent pages, and (optionally) the RFC 8628 device flow. `npm start` runs it when no
 * upstream is configured; the integration tests use it as a real upstream. Not for production: state lives in
 * memory, keys and the client secret are random per start.
 */
import { randomBytes } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { type PortFallback, listenWithFallback } from '../net/listen.ts';
import type { KoaContextWithOIDC, ProviderError, Provider } from 'oidc-provider';
import type { Logger } from 'pino';
import { DEMO_CLIENT_ID, DEMO_PASSWORD, DEMO_USERNAME } from './account.ts';
import { interactionHandler } from './interactions.ts';
import { demoConfiguration } from './provider-config.ts';

export { DEMO_CLIENT_ID, DEMO_PASSWORD, DEMO_SCOPES, DEMO_USERNAME } from './account.ts';

export interface DemoIdpStats {
  /** POST /token requests, whatever their outcome */
  tokenRequests: number;
  /** successful token grants by `grant_type` (`authorization_code`, `urn:ietf:params:oauth:grant-type:device_code`, ...) */
  redemptions: Map<string, number>;
}

export interface DemoIdp {
  readonly issuer: string;
  readonly port: number;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly username: string;
  readonly password: string;
  readonly provider: Provider;
  readonly stats: DemoIdpStats;
  /** Closes the HTTP server and every open connection. */
  close(): Promise<void>;
}

export interface DemoIdpOptions {
  host: string;
  /** 0 picks a free port */
  port: number;
  /** when `port` is taken, try the following ports (and say which one was used) */
  portFallback?: PortFallback;
  /** the client's registered redirect URIs (exact match) */
  redirectUris: string[];
  /** `false`: authorization code only, no device authorization endpoint */
  deviceFlow: boolean;
  log: Logger;
  clientId?: string;
  /** default: random per start */
  clientSecret?: string;
  /** seconds */
  ttl?: { deviceCode?: number; accessToken?: number };
  /** Tests only: rotate the refresh token on every use (RFC 9700 §4.14.2), so reuse of a rotated one shows. */
  rotateRefreshTokens?: boolean;
  /**
   * Tests only: sees every request before the provider does and hands it on with `next()` (or never calls it, to
   * hold or drop it). Lets a test observe or stall the token endpoint from outside.
   */
  intercept?: (req: IncomingMessage, res: ServerResponse, next: () => void) => void;
}

/**
 * Starts the demo identity provider on `host:port` and resolves once it listens. The issuer is
 * `http://{host}:{port}` (`localhost` for a wildcard host). Logs one warning line that this is a demo.
 */
export async function startDemoIdp(o: DemoIdpOptions): Promise<DemoIdp> {
  const clientId = o.clientId ?? DEMO_CLIENT_ID;
  const clientSecret = o.clientSecret ?? randomBytes(24).toString('base64url');
  const server = createServer();
  const port = await listenWithFallback(server, o.host, o.port, o.portFallback);
  try {
    const issuer = `http://${urlHost(o.host)}:${port}`;
    const stats: DemoIdpStats = { tokenRequests: 0, redemptions: new Map() };
    const provider = await quietly(async () => {
      const { Provider: ProviderClass } = await import('oidc-provider');
      return new ProviderClass(issuer, demoConfiguration({ ...o, clientId, clientSecret }));
    });
    provider.on('grant.success', (ctx) => {
      const grantType = grantTypeOf(ctx);
      stats.redemptions.set(grantType, (stats.redemptions.get(grantType) ?? 0) + 1);
    });
    provider.on('grant.error', (ctx, err) => {
      o.log.debug(
        { grantType: grantTypeOf(ctx), error: (err as ProviderError).error ?? err.name },
        'token request refused',
      );
    });
    provider.on('server_error', (_ctx, err) => o.log.error({ err }, 'demo identity provider error'));
    provider.on('error', (err) => o.log.error({ err }, 'demo identity provider error'));

    const providerHandler = provider.callback();
    const interactions = interactionHandler(provider, o.log);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
      if (req.method === 'POST' && path === '/token') stats.tokenRequests++;
      const next = () => {
        if (path.startsWith('/interaction/')) void interactions(req, res, path);
        else providerHandler(req, res);
      };
      if (o.intercept === undefined) next();
      else o.intercept(req, res, next);
    });

    o.log.warn(
      { issuer, deviceFlow: o.deviceFlow },
      `demo identity provider at ${issuer} (sign in as ${DEMO_USERNAME} / ${DEMO_PASSWORD}); not for production`,
    );
    return {
      issuer,
      port,
      clientId,
      clientSecret,
      username: DEMO_USERNAME,
      password: DEMO_PASSWORD,
      provider,
      stats,
      close: () => closeServer(server),
    };
  } catch (err) {
    await closeServer(server);
    throw err;
  }
}

function grantTypeOf(ctx: KoaContextWithOIDC): string {
  const grantType = ctx.oidc.params?.grant_type;
  return typeof grantType === 'string' ? grantType : 'unknown';
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return 'localhost';
  return host.includes(':') ? `[${host}]` : host;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/**
 * Runs `fn` with oidc-provider's own console notices dropped: it prints development-only hints (and, on Node 20, a
 * runtime warning at import) that do not apply to a demo that configures its own adapter, keys and pages.
 */
async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const { warn, info } = console;
  const filter =
    (write: (...args: unknown[]) => void) =>
    (...args: unknown[]): void => {
      if (typeof args[0] === 'string' && args[0].includes('oidc-provider ')) return;
      write.apply(console, args);
    };
  console.warn = filter(warn);
  console.info = filter(info);
  try {
    return await fn();
  } finally {
    console.warn = warn;
    console.info = info;
  }
}

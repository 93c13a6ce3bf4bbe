/**
 * The built-in demo identity provider: node-oidc-provider with one confidential client, one user (`demo` / `demo`),
 * its own small sign-in and consent pages, and (optionally) the RFC 8628 device flow. `npm start` runs it when no
 * upstream is configured; the integration tests use it as a real upstream. Not for production: state lives in
 * memory, keys and the client secret are random per start.
 */
import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { type PortFallback, listenWithFallback } from '../net/listen.ts';
import type { Account, Configuration, KoaContextWithOIDC, Provider, ProviderError } from 'oidc-provider';
import type { Logger } from 'pino';
import { memoryAdapterFactory } from './adapter.ts';
import {
  PAGE_HEADERS,
  cancelledPage,
  codePage,
  confirmPage,
  consentPage,
  donePage,
  errorPage,
  loginPage,
} from './pages.ts';

export const DEMO_USERNAME = 'demo';
export const DEMO_PASSWORD = 'demo';
export const DEMO_CLIENT_ID = 'devicegate-demo';
const CLIENT_NAME = 'devicegate (demo)';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** Scopes the demo client may ask for. */
export const DEMO_SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;
/** Largest sign-in/consent form body read (bytes). */
const MAX_FORM_BYTES = 8 * 1024;

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
      return new ProviderClass(issuer, configuration({ ...o, clientId, clientSecret }));
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

function configuration(o: DemoIdpOptions & { clientId: string; clientSecret: string }): Configuration {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const grantTypes = ['authorization_code', 'refresh_token', ...(o.deviceFlow ? [DEVICE_CODE_GRANT] : [])];
  return {
    adapter: memoryAdapterFactory(),
    clients: [
      {
        client_id: o.clientId,
        client_secret: o.clientSecret,
        client_name: CLIENT_NAME,
        grant_types:
          o.redirectUris.length === 0 ? grantTypes.filter((g) => g !== 'authorization_code') : grantTypes,
        response_types: o.redirectUris.length === 0 ? [] : ['code'],
        redirect_uris: o.redirectUris,
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
        scope: DEMO_SCOPES.join(' '),
      },
    ],
    jwks: { keys: [{ ...jwk, kty: 'EC', kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'ES256' }] },
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    // `phone` is a scope the provider knows but the demo client may not ask for (→ invalid_scope).
    scopes: ['openid', 'offline_access', 'profile', 'email', 'phone'],
    responseTypes: ['code'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      phone: ['phone_number'],
    },
    findAccount: async (_ctx, sub) => (sub === DEMO_USERNAME ? demoAccount : undefined),
    clientBasedCORS: () => false,
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError: (ctx, out) => {
      ctx.type = 'html';
      setPageHeaders(ctx);
      ctx.body = errorPage('Sign-in failed', [out.error, out.error_description].filter(Boolean).join(': '));
    },
    ttl: {
      AccessToken: o.ttl?.accessToken ?? 3600,
      AuthorizationCode: 60,
      BackchannelAuthenticationRequest: 600,
      ClientCredentials: 600,
      DeviceCode: o.ttl?.deviceCode ?? 600,
      Grant: 86_400,
      IdToken: 3600,
      Interaction: 900,
      PreAuthorizedCode: 600,
      RefreshToken: 86_400,
      Session: 86_400,
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: o.deviceFlow,
        charset: 'base-20',
        mask: '****-****',
        userCodeInputSource: (ctx, form, _out, err) => {
          ctx.type = 'html';
          setPageHeaders(ctx);
          ctx.body = err?.name === 'AbortedError' ? cancelledPage() : codePage(codeMessage(form, err));
        },
        userCodeConfirmSource: (ctx, form, client, _deviceInfo, userCode) => {
          ctx.type = 'html';
          setPageHeaders(ctx);
          ctx.body = confirmPage({ form, clientName: client.clientName ?? client.clientId, userCode });
        },
        successSource: (ctx) => {
          ctx.type = 'html';
          setPageHeaders(ctx);
          ctx.body = donePage(ctx.oidc.client?.clientName);
        },
      },
      introspection: {
        enabled: true,
        // a client may introspect only its own tokens
        allowedPolicy: async (ctx, _client, token) => token.clientId === ctx.oidc.client?.clientId,
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (ctx, _client, token) => token.clientId === ctx.oidc.client?.clientId,
      },
      userinfo: { enabled: true },
      resourceIndicators: { enabled: false },
      rpInitiatedLogout: { enabled: false },
    },
  };
}

const demoAccount: Account = {
  accountId: DEMO_USERNAME,
  claims: () => ({
    sub: DEMO_USERNAME,
    name: 'Demo User',
    preferred_username: DEMO_USERNAME,
    email: 'demo@example.com',
    email_verified: true,
  }),
};

function codeMessage(form: string, err: ProviderError | undefined): Parameters<typeof codePage>[0] {
  if (err === undefined) return { form };
  // One message for unknown, expired and used codes (RFC 8628 §5.1: give a guesser nothing to learn).
  const codeProblem =
    err.userCode !== undefined || /^(NoCode|NotFound|Expired|AlreadyUsed)Error$/.test(err.name);
  return {
    form,
    error: true,
    message: codeProblem
      ? 'That code does not work: it may be mistyped, expired or already used. Check your device and try again.'
      : 'Something went wrong. Try again.',
  };
}

function setPageHeaders(ctx: KoaContextWithOIDC): void {
  for (const [name, value] of Object.entries(PAGE_HEADERS)) if (name !== 'content-type') ctx.set(name, value);
}

function grantTypeOf(ctx: KoaContextWithOIDC): string {
  const grantType = ctx.oidc.params?.grant_type;
  return typeof grantType === 'string' ? grantType : 'unknown';
}

/** Our own `/interaction/{uid}` pages: sign-in (prompt `login`) and consent (prompt `consent`). */
function interactionHandler(provider: Provider, log: Logger) {
  return async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    const m = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login|confirm))?$/.exec(path);
    try {
      if (m === null) return send(res, 404, errorPage('Not found', 'There is no such page.'));
      const [, uid, step] = m;
      const details = await provider.interactionDetails(req, res);
      if (details.uid !== uid) {
        return send(res, 400, errorPage('Sign-in expired', 'This sign-in page is out of date. Start again.'));
      }
      const clientName = CLIENT_NAME;
      const prompt = details.prompt.name;
      if (req.method === 'GET' && step === undefined) {
        if (prompt === 'login')
          return send(res, 200, loginPage({ action: `/interaction/${uid}/login`, clientName }));
        if (prompt === 'consent') {
          const scopes = details.prompt.details.missingOIDCScope ?? [];
          return send(res, 200, consentPage({ action: `/interaction/${uid}/confirm`, clientName, scopes }));
        }
        return send(res, 400, errorPage('Sign-in failed', 'This step is not supported by the demo.'));
      }
      if (req.method !== 'POST' || step === undefined) {
        return send(res, 405, errorPage('Not allowed', 'Use the form on the page.'));
      }
      const form = await readForm(req);
      if (form === undefined) return send(res, 400, errorPage('Bad request', 'The form could not be read.'));

      if (step === 'login' && prompt === 'login') {
        const username = form.get('username') ?? '';
        if (!sameSecret(username, DEMO_USERNAME) || !sameSecret(form.get('password') ?? '', DEMO_PASSWORD)) {
          return send(
            res,
            401,
            loginPage({
              action: `/interaction/${uid}/login`,
              clientName,
              error: 'Wrong username or password.',
              username,
            }),
          );
        }
        return provider.interactionFinished(
          req,
          res,
          { login: { accountId: DEMO_USERNAME } },
          { mergeWithLastSubmission: false },
        );
      }
      if (step === 'confirm' && prompt === 'consent') {
        const decision = form.get('decision');
        if (decision === 'deny') {
          return provider.interactionFinished(
            req,
            res,
            { error: 'access_denied', error_description: 'the person denied the request' },
            { mergeWithLastSubmission: false },
          );
        }
        if (decision !== 'approve')
          return send(res, 400, errorPage('Bad request', 'Choose Approve or Deny.'));
        const accountId = details.session?.accountId;
        const clientId = details.params.client_id;
        if (accountId === undefined || typeof clientId !== 'string') {
          return send(res, 400, errorPage('Sign-in expired', 'Sign in again.'));
        }
        const existing =
          details.grantId === undefined ? undefined : await provider.Grant.find(details.grantId);
        const grant = existing ?? new provider.Grant({ accountId, clientId });
        const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
        if (missingOIDCScope !== undefined) grant.addOIDCScope(missingOIDCScope.join(' '));
        if (missingOIDCClaims !== undefined) grant.addOIDCClaims(missingOIDCClaims);
        for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
          grant.addResourceScope(resource, scopes.join(' '));
        }
        const grantId = await grant.save();
        return provider.interactionFinished(
          req,
          res,
          { consent: existing === undefined ? { grantId } : {} },
          { mergeWithLastSubmission: true },
        );
      }
      return send(res, 400, errorPage('Sign-in expired', 'This sign-in page is out of date. Start again.'));
    } catch (err) {
      if (err instanceof Error && err.name === 'SessionNotFound') {
        return send(
          res,
          400,
          errorPage('Sign-in expired', 'This sign-in has expired or began in another browser.'),
        );
      }
      log.error({ err }, 'demo identity provider page failed');
      if (!res.headersSent) send(res, 500, errorPage('Error', 'Something went wrong. Start again.'));
      else res.destroy();
    }
  };
}

function send(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { ...PAGE_HEADERS, 'content-length': Buffer.byteLength(html) });
  res.end(html);
}

/** An `application/x-www-form-urlencoded` body of at most {@link MAX_FORM_BYTES}, or `undefined`. */
async function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/x-www-form-urlencoded\b/i.test(type)) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** Constant-time comparison (of digests, so lengths do not leak either). */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
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

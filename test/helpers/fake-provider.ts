/**
 * Fake hosted identity providers for the recipes in docs/upstreams.md: one loopback http server per test, shaped by a
 * profile after what each provider documents for its device flow (and, for Cognito, its authorization code flow) —
 * paths, discovery or none, issuer shape, the client authentication it accepts and how it refuses another, status
 * codes, content types and field names. Nothing here is secure; the person is simulated by {@link approve}.
 *
 * Sources: GitHub "Authorizing OAuth apps — device flow"; Google "OAuth 2.0 for TV and Limited-Input Device
 * Applications"; Microsoft identity platform "device authorization grant" and "certificate credentials"; Auth0
 * "Device Authorization Flow"; Okta "Device Authorization Grant"; Keycloak "OAuth 2.0 Device Authorization Grant";
 * Amazon Cognito "Authorize endpoint" / "Token endpoint".
 */
import { randomBytes } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type JWK, decodeProtectedHeader, importJWK, jwtVerify } from 'jose';

export type ProviderName = 'github' | 'google' | 'entra' | 'auth0' | 'okta' | 'keycloak' | 'cognito';

type AuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

interface Profile {
  /** the issuer's path below the server's origin (Auth0's ends in a slash) */
  issuerPath: string;
  /** whether `/.well-known/openid-configuration` below the issuer answers (GitHub: 404 on both paths) */
  discovery: boolean;
  devicePath?: string;
  tokenPath: string;
  authorizePath?: string;
  /** the one client authentication the token endpoint accepts */
  auth: AuthMethod;
  /** Google: `verification_url` instead of `verification_uri` */
  verificationField: 'verification_uri' | 'verification_url';
  /** status of `authorization_pending` and `slow_down` answers (GitHub: 200, Google: 428 and 403, others 400) */
  pendingStatus: number;
  slowDownStatus: number;
  /** GitHub: the `slow_down` answer carries the new interval */
  slowDownInterval: boolean;
  /** GitHub: form-encoded unless the request accepts JSON */
  formUnlessJson: boolean;
  tokenType: string;
}

/** How a provider that follows RFC 8628 §3.5 and RFC 6749 to the letter answers (most of them do). */
const RFC_ANSWERS = {
  verificationField: 'verification_uri',
  pendingStatus: 400,
  slowDownStatus: 400,
  slowDownInterval: false,
  formUnlessJson: false,
  tokenType: 'Bearer',
} as const satisfies Partial<Profile>;

const PROFILES: Record<ProviderName, (tenant: string) => Profile> = {
  github: () => ({
    issuerPath: '',
    discovery: false,
    devicePath: '/login/device/code',
    tokenPath: '/login/oauth/access_token',
    auth: 'none',
    verificationField: 'verification_uri',
    pendingStatus: 200,
    slowDownStatus: 200,
    slowDownInterval: true,
    formUnlessJson: true,
    tokenType: 'bearer',
  }),
  google: () => ({
    issuerPath: '',
    discovery: true,
    devicePath: '/device/code',
    tokenPath: '/token',
    auth: 'client_secret_post',
    verificationField: 'verification_url',
    pendingStatus: 428,
    slowDownStatus: 403,
    slowDownInterval: false,
    formUnlessJson: false,
    tokenType: 'Bearer',
  }),
  entra: (tenant) => ({
    issuerPath: `/${tenant}/v2.0`,
    discovery: true,
    devicePath: `/${tenant}/oauth2/v2.0/devicecode`,
    tokenPath: `/${tenant}/oauth2/v2.0/token`,
    auth: 'private_key_jwt',
    ...RFC_ANSWERS,
  }),
  auth0: () => ({
    issuerPath: '/',
    discovery: true,
    devicePath: '/oauth/device/code',
    tokenPath: '/oauth/token',
    // the device flow is for Native applications, whose token endpoint authentication method is None
    auth: 'none',
    verificationField: 'verification_uri',
    pendingStatus: 403,
    slowDownStatus: 429,
    slowDownInterval: false,
    formUnlessJson: false,
    tokenType: 'Bearer',
  }),
  okta: () => ({
    issuerPath: '/oauth2/default',
    discovery: true,
    devicePath: '/oauth2/default/v1/device/authorize',
    tokenPath: '/oauth2/default/v1/token',
    auth: 'private_key_jwt',
    ...RFC_ANSWERS,
  }),
  keycloak: (realm) => ({
    issuerPath: `/realms/${realm}`,
    discovery: true,
    devicePath: `/realms/${realm}/protocol/openid-connect/auth/device`,
    tokenPath: `/realms/${realm}/protocol/openid-connect/token`,
    auth: 'client_secret_basic',
    ...RFC_ANSWERS,
  }),
  cognito: (pool) => ({
    issuerPath: `/${pool}`,
    discovery: true,
    tokenPath: '/oauth2/token',
    authorizePath: '/oauth2/authorize',
    auth: 'client_secret_basic',
    ...RFC_ANSWERS,
  }),
};

/** One request the provider received, as the tests check it. */
export interface SeenRequest {
  path: string;
  accept: string;
  /** the client authentication the request carried */
  auth: AuthMethod | 'mixed';
  /** what the provider answered */
  status: number;
  at: number;
}

export interface FakeProvider {
  readonly name: ProviderName;
  /** the server's origin, `http://127.0.0.1:{port}` */
  readonly origin: string;
  readonly issuer: string;
  readonly deviceEndpoint?: string;
  readonly tokenEndpoint: string;
  readonly authorizeEndpoint?: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly requests: SeenRequest[];
  /** the access token each approved user code (or authorization code) was issued */
  readonly issued: Map<string, string>;
  /** The person approves the device flow with this user code. */
  approve(userCode: string): void;
  close(): Promise<void>;
}

export interface FakeProviderOptions {
  /** Entra tenant id, Keycloak realm */
  tenant?: string;
  /** the interval handed out with each device authorization (s, default 1) */
  intervalSeconds?: number;
  /** answer the first poll of each flow with `slow_down` */
  slowDownFirst?: boolean;
  /** `private_key_jwt`: the public key registered for the client, with the `x5t#S256` Entra finds it by */
  clientPublicJwk?: JWK;
  /** the client secret registered (default: a random one with `-` and `+`, which Basic must URL-encode) */
  clientSecret?: string;
}

interface DeviceFlow {
  deviceCode: string;
  userCode: string;
  interval: number;
  approved: boolean;
  polls: number;
}

export async function startFakeProvider(
  name: ProviderName,
  o: FakeProviderOptions = {},
): Promise<FakeProvider> {
  const profile = PROFILES[name](o.tenant ?? 'tenant-1');
  const clientId = `${name}-client`;
  const clientSecret = o.clientSecret ?? `s-${randomBytes(8).toString('hex')}+/=-x`;
  const flows = new Map<string, DeviceFlow>();
  const codes = new Map<string, { redirectUri: string; challenge: string }>();
  const requests: SeenRequest[] = [];
  const issued = new Map<string, string>();
  let origin = '';

  const handle = async (req: IncomingMessage, res: ServerResponse, body: URLSearchParams): Promise<void> => {
    const url = new URL(req.url ?? '/', origin);
    const path = url.pathname;
    const accept = req.headers.accept ?? '';
    const send = (status: number, fields: Record<string, string | number>): void => {
      requests.push({ path, accept, auth: seenAuth(req, body), status, at: Date.now() });
      const json = !profile.formUnlessJson || accept.includes('application/json');
      const type = json
        ? 'application/json; charset=utf-8'
        : 'application/x-www-form-urlencoded; charset=utf-8';
      const text = json
        ? JSON.stringify(fields)
        : new URLSearchParams(
            Object.entries(fields).map(([k, v]): [string, string] => [k, String(v)]),
          ).toString();
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(text);
    };
    const issuer = `${origin}${profile.issuerPath}`;
    if (
      req.method === 'GET' &&
      path === `${profile.issuerPath.replace(/\/$/, '')}/.well-known/openid-configuration`
    ) {
      if (!profile.discovery) return send(404, { error: 'Not Found' });
      return send(200, {
        issuer,
        token_endpoint: `${origin}${profile.tokenPath}`,
        ...(profile.devicePath !== undefined && {
          device_authorization_endpoint: `${origin}${profile.devicePath}`,
        }),
        ...(profile.authorizePath !== undefined && {
          authorization_endpoint: `${origin}${profile.authorizePath}`,
        }),
      });
    }
    if (req.method === 'GET' && path === profile.authorizePath) {
      // Cognito's hosted UI, with the person signing in at once: back to the redirect URI with a code.
      const code = randomBytes(12).toString('hex');
      codes.set(code, {
        redirectUri: url.searchParams.get('redirect_uri') ?? '',
        challenge: url.searchParams.get('code_challenge') ?? '',
      });
      const back = new URL(url.searchParams.get('redirect_uri') ?? '');
      back.searchParams.set('code', code);
      back.searchParams.set('state', url.searchParams.get('state') ?? '');
      requests.push({ path, accept, auth: 'none', status: 302, at: Date.now() });
      res.writeHead(302, { location: back.href });
      res.end();
      return;
    }
    if (req.method !== 'POST') return send(404, { error: 'Not Found' });
    if (path === profile.devicePath) {
      // Device authorization: GitHub and Google take the client id in the body; the others accept their method.
      if (body.get('client_id') !== clientId && basicUser(req) !== clientId) {
        return send(400, { error: 'invalid_client' });
      }
      const flow: DeviceFlow = {
        deviceCode: randomBytes(16).toString('hex'),
        userCode: `${letters(4)}-${letters(4)}`,
        interval: o.intervalSeconds ?? 1,
        approved: false,
        polls: 0,
      };
      flows.set(flow.deviceCode, flow);
      return send(200, {
        device_code: flow.deviceCode,
        user_code: flow.userCode,
        [profile.verificationField]: `${origin}/device`,
        expires_in: 900,
        interval: flow.interval,
      });
    }
    if (path !== profile.tokenPath) return send(404, { error: 'Not Found' });
    const refusal = await authRefusal(profile.auth, req, body, {
      clientId,
      clientSecret,
      tokenEndpoint: `${origin}${profile.tokenPath}`,
      ...(o.clientPublicJwk !== undefined && { jwk: o.clientPublicJwk }),
    });
    if (refusal !== undefined) return send(401, { error: 'invalid_client', error_description: refusal });
    const token = (): Record<string, string | number> => ({
      access_token: `at-${name}-${randomBytes(8).toString('hex')}`,
      token_type: profile.tokenType,
      expires_in: 3600,
      scope: body.get('scope') ?? 'openid',
    });
    if (body.get('grant_type') === 'authorization_code') {
      const code = codes.get(body.get('code') ?? '');
      codes.delete(body.get('code') ?? '');
      if (code === undefined || code.redirectUri !== body.get('redirect_uri')) {
        return send(400, { error: 'invalid_grant' });
      }
      const t = token();
      issued.set(code.challenge, String(t.access_token));
      return send(200, t);
    }
    if (body.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:device_code') {
      return send(400, { error: 'unsupported_grant_type' });
    }
    const flow = flows.get(body.get('device_code') ?? '');
    if (flow === undefined)
      return send(profile.pendingStatus === 200 ? 200 : 400, { error: 'expired_token' });
    flow.polls++;
    if (o.slowDownFirst === true && flow.polls === 1) {
      flow.interval += 1;
      return send(profile.slowDownStatus, {
        error: 'slow_down',
        ...(profile.slowDownInterval && { interval: flow.interval }),
      });
    }
    if (!flow.approved) return send(profile.pendingStatus, { error: 'authorization_pending' });
    flows.delete(flow.deviceCode);
    const t = token();
    issued.set(flow.userCode, String(t.access_token));
    return send(200, t);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, new URLSearchParams(Buffer.concat(chunks).toString())).catch((err: unknown) => {
        res.writeHead(500);
        res.end(String(err));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    name,
    origin,
    issuer: `${origin}${profile.issuerPath}`,
    ...(profile.devicePath !== undefined && { deviceEndpoint: `${origin}${profile.devicePath}` }),
    tokenEndpoint: `${origin}${profile.tokenPath}`,
    ...(profile.authorizePath !== undefined && { authorizeEndpoint: `${origin}${profile.authorizePath}` }),
    clientId,
    clientSecret,
    requests,
    issued,
    approve(userCode) {
      const flow = [...flows.values()].find((f) => f.userCode === userCode);
      if (flow === undefined) throw new Error(`no device flow with user code ${userCode}`);
      flow.approved = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function letters(n: number): string {
  const alphabet = 'BCDFGHJKLMNPQRSTVWXZ';
  return Array.from(randomBytes(n), (b) => alphabet[b % alphabet.length]).join('');
}

function basicUser(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (h?.startsWith('Basic ') !== true) return undefined;
  const [user] = Buffer.from(h.slice(6), 'base64').toString().split(':', 1);
  return user === undefined ? undefined : decodeURIComponent(user.replaceAll('+', ' '));
}

function seenAuth(req: IncomingMessage, body: URLSearchParams): SeenRequest['auth'] {
  const found: AuthMethod[] = [];
  if (req.headers.authorization?.startsWith('Basic ') === true) found.push('client_secret_basic');
  if (body.has('client_secret')) found.push('client_secret_post');
  if (body.has('client_assertion')) found.push('private_key_jwt');
  if (found.length > 1) return 'mixed';
  return found[0] ?? 'none';
}

/** Why the token endpoint refuses the client's authentication, or `undefined` when it accepts it. */
async function authRefusal(
  method: AuthMethod,
  req: IncomingMessage,
  body: URLSearchParams,
  c: { clientId: string; clientSecret: string; tokenEndpoint: string; jwk?: JWK },
): Promise<string | undefined> {
  const seen = seenAuth(req, body);
  if (seen !== method) return `this client authenticates with ${method}, not ${seen}`;
  switch (method) {
    case 'none':
      return body.get('client_id') === c.clientId ? undefined : 'unknown client';
    case 'client_secret_post':
      return body.get('client_id') === c.clientId && body.get('client_secret') === c.clientSecret
        ? undefined
        : 'wrong client credentials';
    case 'client_secret_basic': {
      // RFC 6749 §2.3.1: both parts form-encoded before Base64
      const [user = '', pass = ''] = Buffer.from(req.headers.authorization!.slice(6), 'base64')
        .toString()
        .split(':', 2);
      const decode = (s: string) => decodeURIComponent(s.replaceAll('+', ' '));
      return decode(user) === c.clientId && decode(pass) === c.clientSecret
        ? undefined
        : 'wrong client credentials';
    }
    case 'private_key_jwt': {
      if (c.jwk === undefined) return 'no key registered';
      if (body.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
        return 'wrong client_assertion_type';
      }
      const assertion = body.get('client_assertion') ?? '';
      const header = decodeProtectedHeader(assertion);
      if (c.jwk['x5t#S256'] !== undefined && header['x5t#S256'] !== c.jwk['x5t#S256']) {
        return 'the assertion names no registered certificate';
      }
      try {
        await jwtVerify(assertion, await importJWK(c.jwk, header.alg), {
          audience: c.tokenEndpoint,
          issuer: c.clientId,
          subject: c.clientId,
          maxTokenAge: '10m',
        });
        return undefined;
      } catch (err) {
        return `invalid client assertion: ${err instanceof Error ? err.message : String(err)}`;
      }
    }
  }
}

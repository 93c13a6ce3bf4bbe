/**
 * The upstream client (src/upstream/) against real servers over real HTTP: the demo identity provider
 * (node-oidc-provider) for the protocol, and a tiny fake authorization server for the faults a real one will not
 * produce on demand (docs/security.md). test/unit/upstream-exchange.test.ts covers every classification on fake time.
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OAuthError, UnavailableError } from '../../src/core/errors.ts';
import { type DemoIdp, startDemoIdp } from '../../src/demo/idp.ts';
import { createLogger } from '../../src/observability/log.ts';
import { type UpstreamClient, type UpstreamOptions, createUpstream } from '../../src/upstream/oauth.ts';
import type { BridgeUpstream, RelayUpstream } from '../../src/upstream/types.ts';
import { approveDeviceCode, authorizeInBrowserlessFlow } from '../helpers/idp-person.ts';
import { freePort } from '../helpers/procs.ts';

const log = createLogger('silent');
const REDIRECT_URI = 'http://127.0.0.1:9/oauth/callback';
const closers: Array<() => Promise<void>> = [];

afterAll(async () => {
  for (const close of closers.reverse()) await close();
});

function client(o: Partial<UpstreamOptions> & Pick<UpstreamOptions, 'issuer' | 'mode'>): UpstreamClient {
  return createUpstream({
    clientId: 'devicegate-demo',
    redirectUri: REDIRECT_URI,
    timeoutMs: 2000,
    allowInsecure: true,
    log,
    ...o,
  });
}

function relayOf(c: UpstreamClient): RelayUpstream {
  if (c.upstream.kind !== 'device') throw new Error('not a relay client');
  return c.upstream;
}

function bridgeOf(c: UpstreamClient): BridgeUpstream {
  if (c.upstream.kind !== 'authorization_code') throw new Error('not a bridge client');
  return c.upstream;
}

async function startIdp(o: { deviceFlow: boolean; ttl?: { deviceCode?: number } }): Promise<DemoIdp> {
  const idp = await startDemoIdp({ host: '127.0.0.1', port: 0, redirectUris: [REDIRECT_URI], log, ...o });
  closers.push(() => idp.close());
  return idp;
}

/** Checks a token at the IdP itself: userinfo (it is an OpenID token) and introspection. */
async function acceptedByIdp(idp: DemoIdp, accessToken: string): Promise<{ sub: string; active: boolean }> {
  const issuer = new URL(idp.issuer);
  const opts = { [oauth.allowInsecureRequests]: true };
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, opts));
  const c: oauth.Client = { client_id: idp.clientId };
  const userinfo = await oauth.processUserInfoResponse(
    as,
    c,
    oauth.skipSubjectCheck,
    await oauth.userInfoRequest(as, c, accessToken, opts),
  );
  const introspection = await oauth.processIntrospectionResponse(
    as,
    c,
    await oauth.introspectionRequest(as, c, oauth.ClientSecretBasic(idp.clientSecret), accessToken, opts),
  );
  return { sub: userinfo.sub, active: introspection.active };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('discovery', () => {
  it('finds the demo IdP and reports the endpoints the mode needs', async () => {
    const idp = await startIdp({ deviceFlow: true });
    const c = client({ issuer: idp.issuer, mode: 'device', clientSecret: idp.clientSecret });
    expect(c.status()).toEqual({ ready: false, detail: 'discovery has not finished yet' });
    c.start();
    await c.ready();
    expect(c.status()).toEqual({ ready: true, detail: expect.stringContaining(`${idp.issuer}/device/auth`) });
    c.close();
  });

  it('fails cleanly when nothing listens: not ready, and every method says the upstream is unavailable', async () => {
    const issuer = `http://127.0.0.1:${await freePort()}`;
    const relayClient = client({ issuer, mode: 'device' });
    const bridgeClient = client({ issuer, mode: 'authorization_code' });
    await expect(relayClient.discover()).rejects.toBeInstanceOf(UnavailableError);
    await expect(bridgeClient.discover()).rejects.toBeInstanceOf(UnavailableError);
    expect(relayClient.status()).toEqual({
      ready: false,
      detail: expect.stringContaining('openid-configuration'),
    });
    expect(bridgeClient.status().ready).toBe(false);

    const relay = relayOf(relayClient);
    await expect(relay.startDeviceAuthorization('openid')).rejects.toBeInstanceOf(UnavailableError);
    await expect(relay.pollDeviceToken('some-device-code')).resolves.toEqual({ kind: 'unreachable' });
    const bridge = bridgeOf(bridgeClient);
    await expect(bridge.authorizationRequest({ state: 's', scope: 'openid' })).rejects.toBeInstanceOf(
      UnavailableError,
    );
    await expect(
      bridge.exchangeCode(new URLSearchParams({ code: 'x', state: 's' }), { state: 's', codeVerifier: 'v' }),
    ).rejects.toBeInstanceOf(UnavailableError);
  });

  it('refuses device mode when the upstream has no device authorization endpoint', async () => {
    const idp = await startIdp({ deviceFlow: false });
    const c = client({ issuer: idp.issuer, mode: 'device' });
    const err = await rejection(c.discover());
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('device_authorization_endpoint');
    expect(c.status()).toEqual({
      ready: false,
      detail: expect.stringContaining('device_authorization_endpoint'),
    });
  });
});

describe('relay mode against the demo IdP', () => {
  let idp: DemoIdp;
  let relay: RelayUpstream;

  beforeAll(async () => {
    idp = await startIdp({ deviceFlow: true });
    const c = client({
      issuer: idp.issuer,
      mode: 'device',
      clientId: idp.clientId,
      clientSecret: idp.clientSecret,
    });
    await c.discover();
    relay = relayOf(c);
  });

  it('starts, stays pending, then yields a token the IdP accepts once the person approves', async () => {
    const da = await relay.startDeviceAuthorization('openid profile offline_access');
    expect(da.userCode).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect(da.verificationUri).toBe(`${idp.issuer}/device`);
    expect(da.verificationUriComplete).toBe(`${idp.issuer}/device?user_code=${da.userCode}`);
    expect(da.expiresIn).toBe(600);
    expect(da.interval).toBe(5);

    expect(await relay.pollDeviceToken(da.deviceCode)).toEqual({ kind: 'authorization_pending' });
    const before = idp.stats.redemptions.get('urn:ietf:params:oauth:grant-type:device_code') ?? 0;

    await approveDeviceCode(da.verificationUriComplete!, da.userCode);
    const outcome = await relay.pollDeviceToken(da.deviceCode);
    if (outcome.kind !== 'token') throw new Error(`expected a token, got ${outcome.kind}`);
    expect(outcome.token).toMatchObject({ token_type: 'Bearer', scope: 'openid profile offline_access' });
    expect(outcome.token.expires_in).toBeGreaterThan(0);
    expect(typeof outcome.token.refresh_token).toBe('string');
    expect(typeof outcome.token.id_token).toBe('string');
    expect(outcome.subject).toBe('demo'); // who approved, from the validated ID token: for the approval cap
    expect(await acceptedByIdp(idp, outcome.token.access_token)).toEqual({ sub: 'demo', active: true });
    expect(idp.stats.redemptions.get('urn:ietf:params:oauth:grant-type:device_code')).toBe(before + 1);

    // the device code is single-use: polling again is refused (invalid_grant, which the engine words by what it
    // knows of the flow), not answered with a second token
    expect(await relay.pollDeviceToken(da.deviceCode)).toEqual({ kind: 'invalid_grant' });
  });

  it('works with the plain verification URI and a typed code', async () => {
    const da = await relay.startDeviceAuthorization('openid');
    await approveDeviceCode(da.verificationUri, da.userCode.toLowerCase());
    expect((await relay.pollDeviceToken(da.deviceCode)).kind).toBe('token');
  });

  it('reports access_denied when the person denies at consent', async () => {
    const da = await relay.startDeviceAuthorization('openid');
    await approveDeviceCode(da.verificationUri, da.userCode, { deny: true });
    expect(await relay.pollDeviceToken(da.deviceCode)).toEqual({ kind: 'access_denied' });
  });

  it('reports access_denied when the person cancels at the confirm step', async () => {
    const da = await relay.startDeviceAuthorization('openid');
    await approveDeviceCode(da.verificationUriComplete!, da.userCode, { deny: true, denyAt: 'confirm' });
    expect(await relay.pollDeviceToken(da.deviceCode)).toEqual({ kind: 'access_denied' });
  });

  it('maps a scope the client may not ask for to invalid_scope with our own description', async () => {
    const err = await rejection(relay.startDeviceAuthorization('openid phone'));
    expect(err).toBeInstanceOf(OAuthError);
    expect((err as OAuthError).code).toBe('invalid_scope');
    expect((err as OAuthError).description).not.toContain('requested scope is not allowed'); // oidc-provider's text
  });

  it('reports expired_token once the device code outlives its (short) lifetime', async () => {
    const shortIdp = await startIdp({ deviceFlow: true, ttl: { deviceCode: 1 } });
    const c = client({ issuer: shortIdp.issuer, mode: 'device', clientSecret: shortIdp.clientSecret });
    await c.discover();
    const short = relayOf(c);
    const da = await short.startDeviceAuthorization('openid');
    expect(da.expiresIn).toBe(1);
    let outcome = await short.pollDeviceToken(da.deviceCode);
    for (let i = 0; i < 20 && outcome.kind === 'authorization_pending'; i++) {
      await new Promise((r) => setTimeout(r, 250));
      outcome = await short.pollDeviceToken(da.deviceCode);
    }
    expect(outcome).toEqual({ kind: 'expired_token' });
  });
});

/** A tiny authorization server whose routes each test replaces. */
interface FakeAs {
  readonly url: string;
  routes: Map<string, (req: IncomingMessage, res: ServerResponse, body: string) => void>;
  requests: Array<{ path: string; headers: IncomingMessage['headers']; body: string }>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

async function startFakeAs(): Promise<FakeAs> {
  const routes: FakeAs['routes'] = new Map();
  const requests: FakeAs['requests'] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const body = Buffer.concat(chunks).toString();
      requests.push({ path, headers: req.headers, body });
      const route = routes.get(path);
      if (route === undefined) json(res, 404, { error: 'not_found' });
      else route(req, res, body);
    });
  });
  const url = await listen(server);
  return { url, routes, requests };
}

describe('relay mode against a misbehaving authorization server', () => {
  let fake: FakeAs;
  let relay: RelayUpstream;
  let trapUrl: string;
  let trapHits = 0;
  const deviceAnswer = (over: Record<string, unknown> = {}, drop: string[] = []) => {
    const body: Record<string, unknown> = {
      device_code: 'dc-1',
      user_code: 'BCDF-GHJK',
      verification_uri: `${fake.url}/activate`,
      expires_in: 600,
      interval: 5,
      ...over,
    };
    for (const k of drop) delete body[k];
    fake.routes.set('/device', (_req, res) => json(res, 200, body));
  };
  const tokenAnswer = (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
    fake.routes.set('/token', handler);

  beforeAll(async () => {
    fake = await startFakeAs();
    fake.routes.set('/.well-known/openid-configuration', (_req, res) =>
      json(res, 200, {
        issuer: fake.url,
        device_authorization_endpoint: `${fake.url}/device`,
        token_endpoint: `${fake.url}/token`,
      }),
    );
    const trap = createServer((_req, res) => {
      trapHits++;
      json(res, 200, { access_token: 'trap', token_type: 'Bearer' });
    });
    trapUrl = await listen(trap);
    const c = client({
      issuer: fake.url,
      mode: 'device',
      clientId: 'gw',
      clientSecret: 'gw-secret',
    });
    await c.discover();
    relay = relayOf(c);
  });

  it('authenticates with client_secret_basic and sends the device code as a form', async () => {
    tokenAnswer((_req, res) => json(res, 400, { error: 'authorization_pending' }));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'authorization_pending' });
    const last = fake.requests.at(-1)!;
    // RFC 6749 §2.3.1: id and secret are form-encoded, then base64 (so `-` travels as `%2D`)
    const [scheme, credentials = ''] = (last.headers.authorization ?? '').split(' ');
    expect(scheme).toBe('Basic');
    const decoded = Buffer.from(credentials, 'base64').toString().split(':').map(decodeURIComponent);
    expect(decoded).toEqual(['gw', 'gw-secret']);
    expect(new URLSearchParams(last.body).get('device_code')).toBe('dc-1');
    expect(new URLSearchParams(last.body).get('grant_type')).toBe(
      'urn:ietf:params:oauth:grant-type:device_code',
    );
  });

  it('passes slow_down on', async () => {
    tokenAnswer((_req, res) => json(res, 400, { error: 'slow_down' }));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'slow_down' });
  });

  it('treats a 503 with an HTML body as unreachable', async () => {
    tokenAnswer((_req, res) => {
      res.writeHead(503, { 'content-type': 'text/html' });
      res.end('<html><body>Service Unavailable</body></html>');
    });
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable' });
  });

  it('treats a 429 as unreachable and honours Retry-After', async () => {
    tokenAnswer((_req, res) => json(res, 429, { error: 'slow_down' }, { 'retry-after': '7' }));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable', retryAfterSeconds: 7 });
  });

  it('gives up on a hanging token endpoint at the deadline', async () => {
    const impatient = client({ issuer: fake.url, mode: 'device', clientSecret: 's', timeoutMs: 300 });
    await impatient.discover();
    tokenAnswer(() => undefined); // never answers
    expect(await relayOf(impatient).pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable' });
  });

  it('does not follow a redirect from the token endpoint (with the built-in client and with global fetch)', async () => {
    tokenAnswer((_req, res) => {
      res.writeHead(302, { location: `${trapUrl}/token` });
      res.end();
    });
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable' });
    const withFetch = client({
      issuer: fake.url,
      mode: 'device',
      clientSecret: 's',
      fetch: globalThis.fetch,
    });
    await withFetch.discover();
    expect(await relayOf(withFetch).pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable' });
    expect(trapHits).toBe(0);
  });

  it('maps token endpoint errors: invalid_grant stays itself (the engine words it), invalid_client → unauthorized_client, unknown → server_error', async () => {
    tokenAnswer((_req, res) => json(res, 400, { error: 'invalid_grant' }));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'invalid_grant' });
    tokenAnswer((_req, res) => json(res, 401, { error: 'invalid_client' }));
    expect(await relay.pollDeviceToken('dc-1')).toMatchObject({ kind: 'error', code: 'unauthorized_client' });
    tokenAnswer((_req, res) =>
      json(res, 400, { error: 'made_up', error_description: 'SECRET-UPSTREAM-TEXT' }),
    );
    const outcome = await relay.pollDeviceToken('dc-1');
    expect(outcome).toMatchObject({ kind: 'error', code: 'server_error' });
    expect(JSON.stringify(outcome)).not.toContain('SECRET-UPSTREAM-TEXT');
  });

  it('refuses unusable token responses (no access_token, unknown token_type) as a failed flow', async () => {
    tokenAnswer((_req, res) => json(res, 200, { token_type: 'Bearer', expires_in: 60 }));
    expect(await relay.pollDeviceToken('dc-1')).toMatchObject({ kind: 'error', code: 'server_error' });
    tokenAnswer((_req, res) => json(res, 200, { access_token: 'at', token_type: 'mac' }));
    expect(await relay.pollDeviceToken('dc-1')).toMatchObject({ kind: 'error', code: 'server_error' });
    tokenAnswer((_req, res) => json(res, 200, { access_token: 'at', token_type: 'bearer', expires_in: 60 }));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({
      kind: 'token',
      token: { access_token: 'at', token_type: 'Bearer', expires_in: 60 },
    });
  });

  it('clamps the interval (missing, 0, -1 → 5; 1e9 → 60) and caps expires_in at 1800', async () => {
    deviceAnswer({}, ['interval']);
    expect((await relay.startDeviceAuthorization('openid')).interval).toBe(5);
    deviceAnswer({ interval: 0 });
    expect((await relay.startDeviceAuthorization('openid')).interval).toBe(5);
    deviceAnswer({ interval: -1 });
    expect((await relay.startDeviceAuthorization('openid')).interval).toBe(5);
    deviceAnswer({ interval: 1e9, expires_in: 86_400 });
    expect(await relay.startDeviceAuthorization('openid')).toMatchObject({ interval: 60, expiresIn: 1800 });
    deviceAnswer({ interval: 7 });
    expect(await relay.startDeviceAuthorization('openid')).toEqual({
      deviceCode: 'dc-1',
      userCode: 'BCDF-GHJK',
      verificationUri: `${fake.url}/activate`,
      expiresIn: 600,
      interval: 7,
    });
  });

  it("accepts Google's verification_url only when verification_uri is absent", async () => {
    deviceAnswer({ verification_url: 'https://www.google.com/device' }, ['verification_uri']);
    expect((await relay.startDeviceAuthorization('openid')).verificationUri).toBe(
      'https://www.google.com/device',
    );
    deviceAnswer({ verification_url: 'https://elsewhere.example/device' });
    expect((await relay.startDeviceAuthorization('openid')).verificationUri).toBe(`${fake.url}/activate`);
  });

  it('refuses a device authorization without a usable expires_in', async () => {
    deviceAnswer({}, ['expires_in']);
    await expect(relay.startDeviceAuthorization('openid')).rejects.toBeInstanceOf(UnavailableError);
    deviceAnswer({ expires_in: 0 });
    await expect(relay.startDeviceAuthorization('openid')).rejects.toBeInstanceOf(UnavailableError);
  });

  it('refuses HTML, 5xx and oversized device authorization answers as unavailable', async () => {
    fake.routes.set('/device', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>login first</html>');
    });
    await expect(relay.startDeviceAuthorization('openid')).rejects.toBeInstanceOf(UnavailableError);
    fake.routes.set('/device', (_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html>Bad Gateway</html>');
    });
    await expect(relay.startDeviceAuthorization('openid')).rejects.toBeInstanceOf(UnavailableError);
    fake.routes.set('/device', (_req, res) => {
      // 1 MiB without a Content-Length (chunked): the cap must hold while streaming
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"padding":"');
      for (let i = 0; i < 16; i++) res.write('x'.repeat(64 * 1024));
      res.end('"}');
    });
    const err = await rejection(relay.startDeviceAuthorization('openid'));
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/larger than/);
  });

  it('maps device authorization errors without passing the upstream text on', async () => {
    fake.routes.set('/device', (_req, res) =>
      json(res, 400, { error: 'unauthorized_client', error_description: 'SECRET-UPSTREAM-TEXT' }),
    );
    const err = await rejection(relay.startDeviceAuthorization('openid'));
    expect(err).toMatchObject({ code: 'unauthorized_client' });
    expect((err as OAuthError).description).not.toContain('SECRET-UPSTREAM-TEXT');
    fake.routes.set('/device', (_req, res) => json(res, 400, { error: 'something_new' }));
    expect(await rejection(relay.startDeviceAuthorization('openid'))).toMatchObject({ code: 'server_error' });
  });
});

describe('discovery variants on a fake authorization server', () => {
  it('falls back to RFC 8414 metadata and refuses a server that offers only plain PKCE', async () => {
    const fake = await startFakeAs();
    const metadata = (methods?: string[]) => ({
      issuer: fake.url,
      authorization_endpoint: `${fake.url}/authorize`,
      token_endpoint: `${fake.url}/token`,
      ...(methods !== undefined && { code_challenge_methods_supported: methods }),
    });
    fake.routes.set('/.well-known/oauth-authorization-server', (_req, res) =>
      json(res, 200, metadata(['plain'])),
    );
    const c = client({ issuer: fake.url, mode: 'authorization_code' });
    const err = await rejection(c.discover());
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('S256');

    fake.routes.set('/.well-known/oauth-authorization-server', (_req, res) => json(res, 200, metadata()));
    await c.discover(); // says nothing about methods: S256 is assumed
    expect(c.status().ready).toBe(true);
    fake.routes.set('/.well-known/oauth-authorization-server', (_req, res) =>
      json(res, 200, metadata(['plain', 'S256'])),
    );
    await c.discover();
    expect(fake.requests.some((r) => r.path === '/.well-known/openid-configuration')).toBe(true);
  });

  it('refuses plain-http endpoints unless insecure upstreams are allowed', async () => {
    const fake = await startFakeAs();
    fake.routes.set('/.well-known/openid-configuration', (_req, res) =>
      json(res, 200, {
        issuer: fake.url,
        device_authorization_endpoint: `${fake.url}/d`,
        token_endpoint: `${fake.url}/t`,
      }),
    );
    await expect(
      client({ issuer: fake.url, mode: 'device', allowInsecure: false }).discover(),
    ).rejects.toBeInstanceOf(UnavailableError);
    await expect(
      client({ issuer: fake.url, mode: 'device', allowInsecure: true }).discover(),
    ).resolves.toBeUndefined();
  });
});

describe('bridge mode against the demo IdP', () => {
  let idp: DemoIdp;
  let bridge: BridgeUpstream;

  beforeAll(async () => {
    idp = await startIdp({ deviceFlow: false });
    const c = client({ issuer: idp.issuer, mode: 'authorization_code', clientSecret: idp.clientSecret });
    await c.discover();
    bridge = bridgeOf(c);
  });

  async function start(scope = 'openid email') {
    const state = oauth.generateRandomState();
    const { url, codeVerifier, nonce } = await bridge.authorizationRequest({ state, scope });
    if (nonce === undefined) throw new Error('an openid scope must get a nonce');
    const codeChallenge = await oauth.calculatePKCECodeChallenge(codeVerifier);
    return { codeVerifier, state, nonce, codeChallenge, url };
  }

  it('builds the authorize URL with PKCE S256, the exact redirect URI, state and nonce', async () => {
    const { url, state, nonce, codeChallenge } = await start('openid offline_access');
    const u = new URL(url);
    expect(`${u.origin}${u.pathname}`).toBe(`${idp.issuer}/auth`);
    expect(Object.fromEntries(u.searchParams)).toEqual({
      response_type: 'code',
      client_id: idp.clientId,
      redirect_uri: REDIRECT_URI,
      scope: 'openid offline_access',
      state,
      nonce,
      code_challenge: codeChallenge,
      code_challenge_method: 'S256',
    });
  });

  it('exchanges the code once for a token the IdP accepts; a second exchange of the same callback fails', async () => {
    const { url, state, codeVerifier, nonce } = await start();
    const callback = await authorizeInBrowserlessFlow(url);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('state')).toBe(state);
    expect(callback.searchParams.get('iss')).toBe(idp.issuer); // RFC 9207

    const { token, subject } = await bridge.exchangeCode(callback.searchParams, {
      state,
      codeVerifier,
      nonce,
    });
    expect(token).toMatchObject({ token_type: 'Bearer', scope: 'openid email' });
    expect(subject).toBe('demo'); // the validated ID token's sub: who signed in, for the approval cap
    expect(await acceptedByIdp(idp, token.access_token)).toEqual({ sub: 'demo', active: true });

    const before = idp.stats.redemptions.get('authorization_code') ?? 0;
    const err = await rejection(bridge.exchangeCode(callback.searchParams, { state, codeVerifier, nonce }));
    expect(err).toBeInstanceOf(OAuthError);
    expect(idp.stats.redemptions.get('authorization_code') ?? 0).toBe(before);
  });

  it('refuses a callback whose state or issuer does not match, without a token request', async () => {
    const { url, state, codeVerifier, nonce } = await start();
    const callback = await authorizeInBrowserlessFlow(url);
    const requests = idp.stats.tokenRequests;
    const wrongState = await rejection(
      bridge.exchangeCode(callback.searchParams, { state: `${state}x`, codeVerifier, nonce }),
    );
    expect(wrongState).toMatchObject({ code: 'invalid_request' });
    const forged = new URLSearchParams(callback.searchParams);
    forged.set('iss', 'https://evil.example');
    expect(await rejection(bridge.exchangeCode(forged, { state, codeVerifier, nonce }))).toMatchObject({
      code: 'invalid_request',
    });
    expect(idp.stats.tokenRequests).toBe(requests);
  });

  it('refuses a code with the wrong PKCE verifier', async () => {
    const { url, state, nonce } = await start();
    const callback = await authorizeInBrowserlessFlow(url);
    const err = await rejection(
      bridge.exchangeCode(callback.searchParams, {
        state,
        codeVerifier: oauth.generateRandomCodeVerifier(),
        nonce,
      }),
    );
    expect(err).toBeInstanceOf(OAuthError);
  });

  it('turns a denial (error=access_denied) into OAuthError access_denied', async () => {
    const { url, state, codeVerifier, nonce } = await start();
    const callback = await authorizeInBrowserlessFlow(url, { deny: true });
    expect(callback.searchParams.get('error')).toBe('access_denied');
    const requests = idp.stats.tokenRequests;
    const err = await rejection(bridge.exchangeCode(callback.searchParams, { state, codeVerifier, nonce }));
    expect(err).toBeInstanceOf(OAuthError);
    expect((err as OAuthError).code).toBe('access_denied');
    expect(idp.stats.tokenRequests).toBe(requests);
  });
});

/**
 * The bridge-mode web page under attack (docs/security.md, "The code-entry page"). The gateway is the production
 * graph from `buildGateway` with the config from `loadConfig` (limits included), started on port 0: the page, the
 * failed-entry guard, BridgeFlows, the flow service, the memory store on a fake clock (or Redis, for the
 * cross-instance limits, on a private redis-server), and the real upstream client against the real demo identity
 * provider (node-oidc-provider, authorization code + PKCE only). The one part replaced is the MQTT transport, which
 * records what would be published to each device (the broker is not under test here).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Config, loadConfig } from '../../src/config/index.ts';
import { FakeClock } from '../helpers/clock.ts';
import { userCodeSpace } from '../../src/core/codes.ts';
import { deriveKeys } from '../../src/core/crypto.ts';
import { scanProof } from '../../src/core/scan-link.ts';
import { GUESS_TARGET, guessProbability, maxLiveCodes } from '../../src/core/limits.ts';
import type { PublicJwk } from '../../src/core/flow.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { type DemoIdp, startDemoIdp } from '../../src/demo/idp.ts';
import { createLogger } from '../../src/observability/log.ts';
import type { BridgeFlows } from '../../src/service/bridge.ts';
import type { FlowService } from '../../src/service/flows.ts';
import type { Metrics } from '../../src/observability/metrics.ts';
import type { DeviceTransport } from '../../src/transport/types.ts';
import type { FlowStore } from '../../src/store/types.ts';
import { type Gateway, buildGateway } from '../../src/gateway/index.ts';
import { startRedis, stopAll } from '../helpers/procs.ts';
import { RedisStore } from '../../src/store/redis/index.ts';

const PUBLIC_URL = 'http://gateway.test';
const CALLBACK = `${PUBLIC_URL}/oauth/callback`;
const SECRET = 'web-security-test-secret-0123456789abcdef';
const CODE_TTL_S = 600;
const log = createLogger('silent');
/** Failed-entry limits per minute (DEVICEGATE_CODE_ENTRY_LIMIT_*), or `defaults` for the ones loadConfig derives. */
type LimitsEnv = { perIp?: number; global?: number } | 'defaults';
/** Limits no test reaches unless it means to. */
const GENEROUS = { perIp: 1000, global: 1000 } as const;
/** The live-code count the default limits are documented for (DEVICEGATE_LIVE_CODES' default). */
const DOCUMENTED_LIVE_CODES = 250;
const HOUR_MS = 60 * 60 * 1000;

let idp: DemoIdp;

beforeAll(async () => {
  idp = await startDemoIdp({ host: '127.0.0.1', port: 0, redirectUris: [CALLBACK], deviceFlow: false, log });
});

afterAll(async () => {
  await idp?.close();
  await stopAll();
});

// ---------------------------------------------------------------------------------------------------------------
// Harness

interface Published {
  deviceId: string;
  reply: DeviceReply;
}

interface Harness {
  app: FastifyInstance;
  config: Config;
  clock: FakeClock;
  store: FlowStore;
  service: FlowService;
  bridge: BridgeFlows;
  metrics: Metrics;
  published: Published[];
  /** every response any page client saw: status, headers and body */
  responses: LightMyRequestResponse[];
  /** Starts a flow as a device would (over FlowService.handleRequest) and returns its user code. */
  startFlow(o?: {
    deviceId?: string;
    rid?: string;
    device?: Record<string, string>;
    scope?: string;
  }): Promise<{
    deviceId: string;
    rid: string;
    code: string;
  }>;
  /** What the device was last told. */
  lastReply(deviceId: string): DeviceReply | undefined;
  client(o?: { remoteAddress?: string }): PageClient;
}

const gateways: Gateway[] = [];
afterEach(async () => {
  await Promise.allSettled(gateways.map((g) => g.close()));
  gateways.length = 0;
});

async function harness(
  o: {
    limits?: LimitsEnv;
    trustProxy?: string;
    /** a Redis shared by the instance's store and limits (and its URL, for the config) */
    redis?: Redis;
    redisUrl?: string;
    allowedScopes?: string;
    keyPrefix?: string;
    /** DEVICEGATE_USER_CODE_LENGTH */
    userCodeLength?: number;
    /** DEVICEGATE_PUBLIC_URL (default http://gateway.test) */
    publicUrl?: string;
    /** DEVICEGATE_APPROVALS_PER_PERSON (default: loadConfig's) */
    approvalsPerPerson?: number;
    /** the gateway's logger (default: silent) */
    log?: Logger;
    /** a config without DEVICEGATE_UPSTREAM_* (demo mode), and no issuer passed to the pages */
  } = {},
): Promise<Harness> {
  const config = loadConfig({
    DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
    DEVICEGATE_HTTP_PORT: '0',
    ...(o.redis !== undefined && { DEVICEGATE_REDIS_URL: o.redisUrl }),
    ...(o.trustProxy !== undefined && { DEVICEGATE_TRUST_PROXY: o.trustProxy }),
    DEVICEGATE_UPSTREAM_MODE: 'authorization_code',
    DEVICEGATE_PUBLIC_URL: o.publicUrl ?? PUBLIC_URL,
    DEVICEGATE_SECRET: SECRET,
    ...(o.approvalsPerPerson !== undefined && {
      DEVICEGATE_APPROVALS_PER_PERSON: String(o.approvalsPerPerson),
    }),
    DEVICEGATE_CODE_TTL: String(CODE_TTL_S),
    DEVICEGATE_DEFAULT_SCOPE: 'openid',
    DEVICEGATE_REDIS_KEY_PREFIX: o.keyPrefix ?? `dgtest-${randomBytes(4).toString('hex')}:`,
    ...limitsEnv(o.limits ?? GENEROUS),
    ...(o.allowedScopes !== undefined && { DEVICEGATE_ALLOWED_SCOPES: o.allowedScopes }),
    ...(o.userCodeLength !== undefined && { DEVICEGATE_USER_CODE_LENGTH: String(o.userCodeLength) }),
  });
  const clock = new FakeClock(Date.now());
  const published: Published[] = [];
  const transport: DeviceTransport = {
    start: async () => {},
    publish: async (deviceId, reply) => {
      published.push({ deviceId, reply });
    },
    status: () => ({ connected: true, detail: 'recording' }),
    load: () => ({ saturated: false, detail: 'recording' }),
    close: async () => {},
  };
  const gateway = buildGateway(config, {
    log: o.log ?? log,
    clock,
    transport: { transport, url: () => 'recording' },
    ...(o.redis !== undefined && { redis: o.redis }),
  });
  gateways.push(gateway);
  await gateway.start();
  await gateway.upstream.ready();
  const { app, store, service, metrics } = gateway;
  const bridge = gateway.bridge!;
  const responses: LightMyRequestResponse[] = [];
  let n = 0;
  const h: Harness = {
    app,
    config,
    clock,
    store,
    service,
    bridge,
    metrics,
    published,
    responses,
    async startFlow(f = {}) {
      const deviceId = f.deviceId ?? `dev-${++n}`;
      const rid = f.rid ?? `rid-${n}`;
      const before = published.length;
      await service.handleRequest({
        deviceId,
        action: 'authorize',
        rawAction: 'authorize',
        payload: Buffer.from(
          JSON.stringify({
            rid,
            ...(f.scope !== undefined && { scope: f.scope }),
            ...(f.device !== undefined && { device: f.device }),
          }),
        ),
        remoteAddress: '192.0.2.17',
      });
      const reply = published.slice(before).find((p) => p.deviceId === deviceId)?.reply;
      if (reply?.status !== 'pending') throw new Error(`the flow did not start: ${JSON.stringify(reply)}`);
      return { deviceId, rid, code: reply.user_code };
    },
    lastReply(deviceId) {
      return published.filter((p) => p.deviceId === deviceId).at(-1)?.reply;
    },
    client: (c = {}) => new PageClient(h, c.remoteAddress),
  };
  return h;
}

function limitsEnv(limits: LimitsEnv): Record<string, string> {
  if (limits === 'defaults') return {};
  return {
    ...(limits.perIp !== undefined && { DEVICEGATE_CODE_ENTRY_LIMIT_IP: String(limits.perIp) }),
    ...(limits.global !== undefined && { DEVICEGATE_CODE_ENTRY_LIMIT_GLOBAL: String(limits.global) }),
  };
}

/** A browser over `inject`: keeps cookies, sends same-origin form posts, remembers the page's CSRF token. */
class PageClient {
  readonly jar = new Map<string, string>();
  csrf: string | undefined;
  readonly #h: Harness;
  readonly #remoteAddress: string | undefined;

  constructor(h: Harness, remoteAddress?: string) {
    this.#h = h;
    this.#remoteAddress = remoteAddress;
  }

  get cookieHeader(): string {
    return [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  async request(opts: InjectOptions & { withCookies?: boolean }): Promise<LightMyRequestResponse> {
    const { withCookies = true, ...rest } = opts;
    const res = await this.#h.app.inject({
      ...rest,
      ...(this.#remoteAddress !== undefined && { remoteAddress: this.#remoteAddress }),
      headers: { ...(withCookies && this.jar.size > 0 && { cookie: this.cookieHeader }), ...rest.headers },
    });
    this.#h.responses.push(res);
    for (const c of res.cookies as Array<{ name: string; value: string; maxAge?: number; expires?: Date }>) {
      const cleared =
        c.maxAge === 0 || (c.expires !== undefined && c.expires.getTime() <= Date.now()) || c.value === '';
      if (cleared) this.jar.delete(c.name);
      else this.jar.set(c.name, c.value);
    }
    const token = /name="csrf" value="([^"]+)"/.exec(res.body)?.[1];
    if (token !== undefined) this.csrf = token;
    return res;
  }

  get(url: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    return this.request({ method: 'GET', url, headers });
  }

  /** A same-origin form post, as a browser sends it from our page. */
  post(
    url: string,
    form: Record<string, string> | string,
    headers: Record<string, string> = {},
    opts: { withCookies?: boolean } = {},
  ): Promise<LightMyRequestResponse> {
    return this.request({
      method: 'POST',
      url,
      payload: typeof form === 'string' ? form : new URLSearchParams(form).toString(),
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        origin: PUBLIC_URL,
        'sec-fetch-site': 'same-origin',
        ...headers,
      },
      ...opts,
    });
  }

  /** GET /device then POST the code: the confirm page (or the generic refusal). */
  async enter(code: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    if (this.csrf === undefined) await this.get('/device');
    return this.post('/device', { csrf: this.csrf!, user_code: code }, headers);
  }

  decide(code: string, decision: 'approve' | 'deny', headers: Record<string, string> = {}) {
    return this.post('/device/decision', { csrf: this.csrf!, user_code: code, decision }, headers);
  }
}

function isConfirmPage(res: LightMyRequestResponse, deviceId: string): boolean {
  return res.statusCode === 200 && res.body.includes('Is this your device?') && res.body.includes(deviceId);
}

const INVALID_TEXT = 'That code is not valid. Check the code on your device and try again.';

/** The outcome page's URL for `result`, naming its device (`d`, src/web/routes/done-link.ts). */
function doneAt(result: 'authorized' | 'denied'): RegExp {
  return new RegExp(`^/device/done\\?result=${result}&d=[A-Za-z0-9_-]+$`);
}

/** What the entry form's code field holds. */
function typedValue(res: LightMyRequestResponse): string | undefined {
  return /name="user_code"\s+type="text"\s+value="([^"]*)"/.exec(res.body)?.[1];
}

/** An entry page with its code field emptied: the part of the answer that does not echo what was typed. */
function withoutTyped(res: LightMyRequestResponse): string {
  return res.body.replace(/(name="user_code"\s+type="text"\s+value=")[^"]*"/, '$1"');
}

/** The flow is exactly as the device left it: pending, not approved, its code still usable, the device told nothing. */
async function expectUnchanged(
  h: Harness,
  f: { deviceId: string; rid: string; code: string },
  publishedBefore: number,
) {
  const current = await h.store.get(f.deviceId, f.rid);
  expect(current?.flow.state).toBe('pending');
  expect(current?.flow).not.toHaveProperty('approvedAt');
  expect(await h.bridge.lookup(f.code)).toBeDefined();
  expect(h.published.length).toBe(publishedBefore);
}

/** No response any client saw carries a token the devices got (or any device's secrets). */
function expectNoSecretsInResponses(h: Harness): void {
  const secrets: string[] = [];
  for (const { reply } of h.published) {
    if (reply.status === 'authorized') {
      if ('access_token' in reply && typeof reply.access_token === 'string') secrets.push(reply.access_token);
      if ('id_token' in reply && typeof reply.id_token === 'string') secrets.push(reply.id_token);
    }
  }
  for (const res of h.responses) {
    const text = `${JSON.stringify(res.headers)}\n${res.body}`;
    for (const s of secrets) expect(text.includes(s)).toBe(false);
    expect(text).not.toMatch(/access_token|refresh_token|device_code|code_verifier/);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The upstream, driven like a browser over HTTP (sign-in and consent pages of the demo identity provider)

/**
 * Follows the authorize redirect through the demo IdP's sign-in and consent pages and returns the URL it finally
 * redirects to (our callback), without following it.
 */
async function throughIdp(authorizeUrl: string, consent: 'approve' | 'deny'): Promise<URL> {
  const jar = new Map<string, string>();
  let url = authorizeUrl;
  let init: RequestInit = { method: 'GET' };
  for (let step = 0; step < 20; step++) {
    const res = await fetch(url, {
      ...init,
      redirect: 'manual',
      headers: {
        ...(init.headers as Record<string, string> | undefined),
        cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; '),
      },
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';', 1);
      const eq = pair!.indexOf('=');
      jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
    const location = res.headers.get('location');
    if (location !== null) {
      const next = new URL(location, url);
      if (next.href.startsWith(CALLBACK)) return next;
      url = next.href;
      init = { method: 'GET' };
      continue;
    }
    const body = await res.text();
    if (res.status !== 200) throw new Error(`the IdP answered ${res.status}: ${body.slice(0, 200)}`);
    const action = /<form[^>]*action="([^"]+)"/.exec(body)?.[1];
    if (action === undefined) throw new Error(`no form on the IdP page: ${body.slice(0, 200)}`);
    const form = body.includes('name="password"')
      ? { username: idp.username, password: idp.password }
      : { decision: consent };
    url = new URL(action.replaceAll('&amp;', '&'), url).href;
    init = {
      method: 'POST',
      body: new URLSearchParams(form).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    };
  }
  throw new Error('the IdP did not redirect back');
}

/** Waits until the Redis that `admin` talks to takes writes again (after CLIENT PAUSE … WRITE). */
async function waitForWrites(admin: Redis): Promise<void> {
  await admin.set('dgtest:probe', '1'); // a write: answered once the pause is over
}

/** Path and query of a callback URL, for inject. */
function local(u: URL): string {
  return `${u.pathname}${u.search}`;
}

/** Approve on our page and return the authorize URL (the 303's Location). */
async function approve(c: PageClient, code: string): Promise<string> {
  const confirm = await c.enter(code);
  expect(confirm.statusCode).toBe(200);
  const res = await c.decide(code, 'approve');
  expect(res.statusCode).toBe(303);
  return res.headers.location as string;
}

async function userinfo(accessToken: string): Promise<Response> {
  const meta = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as {
    userinfo_endpoint: string;
  };
  return fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
}

// ---------------------------------------------------------------------------------------------------------------

describe('user code input (B.13)', () => {
  it('accepts lower case, spaces, no dash and fullwidth forms of the same code', async () => {
    const h = await harness();
    const f = await h.startFlow();
    const bare = f.code.replace('-', '');
    const fullwidth = [...f.code]
      .map((ch) => (ch === '-' ? '－' : String.fromCharCode(ch.charCodeAt(0) + 0xfee0)))
      .join('');
    const c = h.client();
    for (const input of [
      f.code.toLowerCase(),
      ` ${bare.slice(0, 4)} ${bare.slice(4)} `,
      bare,
      fullwidth,
      `${bare.slice(0, 4).toLowerCase()}–${bare.slice(4)}`,
    ]) {
      const res = await c.enter(input);
      expect(isConfirmPage(res, f.deviceId), `input ${JSON.stringify(input)}`).toBe(true);
      expect(res.body).toContain(f.code);
    }
  });

  it('refuses Cyrillic look-alikes and over-long input with the one generic answer', async () => {
    const h = await harness();
    const lookAlike: Record<string, string> = {
      B: 'В',
      C: 'С',
      H: 'Н',
      K: 'К',
      M: 'М',
      P: 'Р',
      T: 'Т',
      X: 'Х',
    };
    let f = await h.startFlow();
    while (![...f.code].some((ch) => ch in lookAlike)) f = await h.startFlow();
    const cyrillic = [...f.code].map((ch) => lookAlike[ch] ?? ch).join('');
    expect(cyrillic).not.toBe(f.code);
    const c = h.client();
    const unknown = await c.enter('BCDF-GHJK');
    for (const input of [cyrillic, `${f.code}${' '.repeat(64)}`, 'X'.repeat(2000)]) {
      const res = await c.enter(input);
      expect(res.statusCode).toBe(400);
      expect(withoutTyped(res)).toBe(withoutTyped(unknown));
      expect(res.body).toContain(INVALID_TEXT);
      // the look-alike stays in the field as typed; input longer than any code is not shown again
      expect(typedValue(res)).toBe(input === cyrillic ? cyrillic : '');
    }
    expect(await h.bridge.lookup(f.code)).toBeDefined();
  });

  it('?user_code= only pre-fills the input: the page still asks to submit and then confirm (B.16)', async () => {
    const h = await harness();
    const f = await h.startFlow();
    const c = h.client();
    const res = await c.get(`/device?user_code=${encodeURIComponent(f.code.toLowerCase())}`);
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain(`value="${f.code}"`);
    expect(res.body).toContain('action="/device"');
    expect(res.body).not.toContain('Is this your device?');
    expect((await h.store.get(f.deviceId, f.rid))?.flow).not.toHaveProperty('approvedAt');
  });
});

describe('cross-site request forgery (B.14)', () => {
  it('refuses a missing, forged or foreign token, a cross-site Origin and Sec-Fetch-Site: cross-site; the flow stays as it was', async () => {
    const h = await harness();
    const f = await h.startFlow();
    const victim = h.client();
    await victim.get('/device');
    const other = h.client();
    await other.get('/device');
    expect(other.csrf).not.toBe(victim.csrf);
    const before = h.published.length;

    const attempts: Array<[string, () => Promise<LightMyRequestResponse>]> = [
      ['no token', () => victim.post('/device/decision', { user_code: f.code, decision: 'approve' })],
      [
        'forged token',
        () =>
          victim.post('/device/decision', {
            csrf: randomBytes(32).toString('base64url'),
            user_code: f.code,
            decision: 'approve',
          }),
      ],
      [
        "another session's token",
        () => victim.post('/device/decision', { csrf: other.csrf!, user_code: f.code, decision: 'approve' }),
      ],
      [
        'token without its cookie',
        () =>
          victim.post(
            '/device/decision',
            { csrf: victim.csrf!, user_code: f.code, decision: 'approve' },
            {},
            { withCookies: false },
          ),
      ],
      ['cross-site Origin', () => victim.decide(f.code, 'approve', { origin: 'https://evil.example' })],
      [
        'Origin: null from a sandboxed frame on another site',
        () => victim.decide(f.code, 'deny', { origin: 'null', 'sec-fetch-site': 'cross-site' }),
      ],
      [
        'Origin: null from a sibling site',
        () => victim.decide(f.code, 'deny', { origin: 'null', 'sec-fetch-site': 'same-site' }),
      ],
      [
        'Origin: null with a forged token',
        () =>
          victim.post(
            '/device/decision',
            { csrf: other.csrf!, user_code: f.code, decision: 'deny' },
            { origin: 'null' },
          ),
      ],
      ['Sec-Fetch-Site: cross-site', () => victim.decide(f.code, 'deny', { 'sec-fetch-site': 'cross-site' })],
      ['cross-site code entry', () => victim.enter(f.code, { 'sec-fetch-site': 'cross-site' })],
    ];
    for (const [what, attempt] of attempts) {
      const res = await attempt();
      expect(res.statusCode, what).toBe(403);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.body).toContain('This form has expired');
      expect(res.headers.location).toBeUndefined();
      await expectUnchanged(h, f, before);
    }
    // and the real thing still works from the person's own page — as Chromium sends it under no-referrer
    expect(
      isConfirmPage(
        await victim.enter(f.code, { origin: 'null', 'sec-fetch-site': 'same-origin' }),
        f.deviceId,
      ),
    ).toBe(true);
    expect((await victim.decide(f.code, 'deny')).statusCode).toBe(303);
  });

  it('refuses JSON bodies, repeated fields and method overrides', async () => {
    const h = await harness();
    const f = await h.startFlow();
    const c = h.client();
    await c.get('/device');
    const before = h.published.length;
    const json = await c.request({
      method: 'POST',
      url: '/device/decision',
      headers: { 'content-type': 'application/json', origin: PUBLIC_URL },
      payload: JSON.stringify({ csrf: c.csrf, user_code: f.code, decision: 'approve' }),
    });
    expect(json.statusCode).toBe(415);
    const dup = await c.post('/device', `csrf=${c.csrf}&user_code=${f.code}&user_code=BCDF-GHJK`);
    expect(dup.statusCode).toBe(400);
    const dupDecision = await c.post(
      '/device/decision',
      `csrf=${c.csrf}&user_code=${f.code}&decision=deny&decision=approve`,
    );
    expect(dupDecision.statusCode).toBe(400);
    const override = await c.post('/device/decision', {
      csrf: c.csrf!,
      user_code: f.code,
      decision: 'approve',
      _method: 'PUT',
    });
    expect(override.statusCode).toBe(400);
    const text = await c.request({
      method: 'POST',
      url: '/device',
      headers: { 'content-type': 'text/plain', origin: PUBLIC_URL },
      payload: `csrf=${c.csrf}&user_code=${f.code}`,
    });
    expect(text.statusCode).toBe(415);
    for (const res of [json, dup, dupDecision, override, text]) {
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.headers['x-frame-options']).toBe('DENY');
    }
    await expectUnchanged(h, f, before);
  });

  it('allows only GET/HEAD on pages and POST on forms', async () => {
    const h = await harness();
    const c = h.client();
    for (const [method, url] of [
      ['GET', '/device/decision'],
      ['HEAD', '/device/decision'],
      ['PUT', '/device/decision'],
      ['DELETE', '/device/decision'],
      ['PUT', '/device'],
      ['DELETE', '/device'],
      ['PATCH', '/device'],
      ['POST', '/oauth/callback'],
      ['POST', '/device/done'],
    ] as const) {
      const res = await c.request({ method, url });
      expect([404, 405], `${method} ${url}`).toContain(res.statusCode);
      expect(res.headers['x-frame-options'], `${method} ${url}`).toBe('DENY');
    }
    expect((await c.request({ method: 'HEAD', url: '/device' })).statusCode).toBe(200);
  });
});

describe('headers on every page (B.15, B.17, B.18)', () => {
  it('entry, confirm, outcome and error pages forbid framing, referrers, caching and scripts', async () => {
    const h = await harness({ limits: { ...GENEROUS, perIp: 1 } });
    const f = await h.startFlow();
    const c = h.client();
    const pages: Array<[string, LightMyRequestResponse]> = [];
    pages.push(['entry', await c.get('/device')]);
    pages.push(['confirm', await c.enter(f.code)]);
    pages.push(['done', await c.get('/device/done?result=authorized')]);
    pages.push(['done (unknown result)', await c.get('/device/done?result=<b>')]);
    pages.push(['csrf refusal', await c.post('/device', { user_code: f.code })]);
    pages.push(['invalid code', await c.enter('BCDF-GHJK')]);
    pages.push(['too many', await c.enter('BCDF-GHJL')]);
    pages.push(['callback refusal', await c.get('/oauth/callback?code=x&state=y')]);
    pages.push(['not allowed', await c.request({ method: 'PUT', url: '/device' })]);
    pages.push(['bad request', await c.post('/device', 'user_code=a&user_code=b')]);
    const css = await c.get('/static/device.css');
    expect(css.statusCode).toBe(200);
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    pages.push(['stylesheet', css]);
    expect(pages.find(([n]) => n === 'too many')?.[1].statusCode).toBe(429);

    for (const [name, res] of pages) {
      const csp = String(res.headers['content-security-policy']);
      expect(csp, name).toContain("frame-ancestors 'none'");
      expect(csp, name).toContain("default-src 'none'");
      expect(csp, name).toContain("base-uri 'none'");
      expect(csp, name).toMatch(/form-action 'self'/);
      expect(csp, name).not.toMatch(/script-src|unsafe-inline/);
      expect(res.headers['x-frame-options'], name).toBe('DENY');
      expect(res.headers['referrer-policy'], name).toBe('no-referrer');
      expect(res.headers['cache-control'], name).toBe('no-store');
      expect(res.headers['x-content-type-options'], name).toBe('nosniff');
      if (name !== 'stylesheet') {
        expect(res.headers['content-type'], name).toBe('text/html; charset=utf-8');
        expect(res.body, name).not.toMatch(/<script|<style|\sstyle=|\son[a-z]+=/i);
        expect(res.body, name).toContain('<html lang="en">');
        expect(res.body, name).toContain('name="viewport"');
      }
    }
  });

  it('names the issuer and lets forms lead only to it', async () => {
    const named = await (await harness()).client().get('/device');
    expect(named.headers['content-security-policy']).toContain(`form-action 'self' ${idp.issuer};`);
    expect(named.body).toContain(`You will sign in at ${new URL(idp.issuer).host}.`);
  });

  it('answers every state-changing POST with 303, never 307 (B.19)', async () => {
    const h = await harness();
    const c = h.client();
    const a = await h.startFlow();
    await c.enter(a.code);
    const approved = await c.decide(a.code, 'approve');
    expect(approved.statusCode).toBe(303);
    expect(new URL(approved.headers.location as string).origin).toBe(idp.issuer);
    const b = await h.startFlow();
    await c.enter(b.code);
    const denied = await c.decide(b.code, 'deny');
    expect(denied.statusCode).toBe(303);
    expect(denied.headers.location).toMatch(doneAt('denied'));
    expect(h.lastReply(b.deviceId)).toMatchObject({ status: 'error', error: 'access_denied' });
    const done = await c.get(denied.headers.location as string);
    expect(done.statusCode).toBe(200);
    expect(done.body).toContain('You denied the request');
  });

  it('sets one session cookie: HttpOnly, SameSite=Lax, Path=/, signed; __Host- prefixed and Secure on https', async () => {
    const sessionCookie = async (h: Harness) => {
      const c = h.client();
      const res = await c.get('/device');
      const all = [res.headers['set-cookie']].flat().filter((x) => x !== undefined);
      expect(all).toHaveLength(1);
      return all[0]!;
    };
    const plain = await sessionCookie(await harness());
    expect(plain).toMatch(/^dg_session=[^;]+\.[^;]+;/); // signed
    expect(plain).toMatch(/; HttpOnly/);
    expect(plain).toMatch(/; SameSite=Lax/);
    expect(plain).toMatch(/; Path=\/(;|$)/);
    expect(plain).not.toMatch(/; Secure|; Domain/);
    const https = await sessionCookie(await harness({ publicUrl: 'https://gateway.test' }));
    expect(https).toMatch(/^__Host-dg_session=/);
    expect(https).toMatch(/; Secure/);
    expect(https).toMatch(/; Path=\/(;|$)/);
    expect(https).not.toMatch(/; Domain/);

    // Approve sets no cookie at all: the state lives in the store, bound to the session
    const h = await harness();
    const f = await h.startFlow();
    const c = h.client();
    await c.enter(f.code);
    const res = await c.decide(f.code, 'approve');
    expect(res.headers['set-cookie']).toBeUndefined();
    const location = new URL(res.headers.location as string);
    expect(location.searchParams.get('code_challenge_method')).toBe('S256');
    expect(location.searchParams.get('redirect_uri')).toBe(CALLBACK);
  });
});

describe('escaping (B.20)', () => {
  it('escapes script in ?user_code= and in what the device says about itself', async () => {
    const h = await harness({ allowedScopes: 'openid profile <i>x</i>' });
    const c = h.client();
    const entry = await c.get(`/device?user_code=${encodeURIComponent('"><script>alert(1)</script>')}`);
    expect(entry.statusCode).toBe(200);
    expect(entry.body).not.toContain('<script');
    expect(entry.body).toContain('value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"');

    const f = await h.startFlow({
      device: {
        name: '<script>alert(1)</script>',
        model: '"><img src=x onerror=alert(2)>',
        firmware: "1.0' onload='x",
      },
      scope: 'openid <i>x</i>',
    });
    const confirm = await c.enter(f.code);
    expect(isConfirmPage(confirm, f.deviceId)).toBe(true);
    expect(confirm.body).not.toMatch(/<script|<img|<i>|onerror=alert\(2\)>/);
    expect(confirm.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(confirm.body).toContain('&quot;&gt;&lt;img src=x onerror=alert(2)&gt;');
    expect(confirm.body).toContain('1.0&#39; onload=&#39;x');
    expect(confirm.body).toContain('<code>&lt;i&gt;x&lt;/i&gt;</code>');
  });

  it('shows the code, the device, when and from where it asked, the scopes in words and the warning (C.28)', async () => {
    const h = await harness();
    const f = await h.startFlow({
      device: { name: 'Living room TV', model: 'TV-9000', firmware: '4.2.1' },
      scope: 'openid profile email offline_access',
    });
    h.clock.advance(3 * 60_000);
    const res = await h.client().enter(f.code);
    expect(isConfirmPage(res, f.deviceId)).toBe(true);
    for (const expected of [
      f.code,
      'Living room TV',
      'TV-9000',
      '4.2.1',
      'Asked from',
      'the network address 192.0.2.17',
      '<dd>3 minutes ago</dd>',
      `<dd>in ${CODE_TTL_S / 60 - 3} minutes</dd>`,
      'Know which account you are',
      'See your basic profile',
      'See your email address',
      'Keep its access when you are not there',
      'Continue only if this device is in front of you',
      `You will sign in at ${new URL(idp.issuer).host}.`,
    ]) {
      expect(res.body).toContain(expected);
    }
    // Approve and Deny: real submit buttons of one form; Deny first (Enter submits Deny) and secondary, Approve primary
    const buttons = [...res.body.matchAll(/<button ([^>]*)>([^<]*)<\/button>/g)].map((m) => [m[1], m[2]]);
    expect(buttons).toEqual([
      ['class="button secondary" type="submit" name="decision" value="deny"', 'Deny'],
      ['class="button primary" type="submit" name="decision" value="approve"', 'Approve'],
    ]);
    expect(res.body).not.toContain('UTC');
  });
});

describe('one answer for every unusable code (B.21)', () => {
  it('gives the same status and body for unknown, expired, used and denied codes', async () => {
    const h = await harness();
    const c = h.client();
    const used = await h.startFlow();
    await approve(c, used.code);
    const denied = await h.startFlow();
    await c.enter(denied.code);
    expect((await c.decide(denied.code, 'deny')).statusCode).toBe(303);
    const expired = await h.startFlow();
    h.clock.advance((CODE_TTL_S + 1) * 1000);

    const failuresBefore = await h.metrics.value('devicegate_code_entry_failures_total');
    const answers = [];
    for (const code of ['BCDF-GHJK', expired.code, used.code, denied.code]) answers.push(await c.enter(code));
    // the same answer but for the code field, which holds what was typed (as long as any code: the same length)
    for (const res of answers) {
      expect(res.statusCode).toBe(400);
      expect(withoutTyped(res)).toBe(withoutTyped(answers[0]!));
      expect(res.headers['content-length']).toBe(answers[0]!.headers['content-length']);
    }
    expect(answers.map(typedValue)).toEqual(['BCDF-GHJK', expired.code, used.code, denied.code]);
    expect(answers[0]!.body).toContain(INVALID_TEXT);
    expect(await h.metrics.value('devicegate_code_entry_failures_total')).toBe(failuresBefore + 4);
    // and the same answer to a decision on a dead code
    const decision = await c.decide(used.code, 'deny');
    expect(decision.statusCode).toBe(400);
    expect(withoutTyped(decision)).toBe(withoutTyped(answers[0]!));
    expect(typedValue(decision)).toBe(used.code);
  });
});

describe('brute force (B.22, RFC 8628 §5.1)', () => {
  it('derives default limits (loadConfig) that keep the guessing probability below 1e-6 for the documented live codes', () => {
    expect(userCodeSpace(8)).toBe(20 ** 8);
    const { perIp, global } = loadConfig({}).codeEntryLimits;
    const perMinute = (global.max * 60_000) / global.windowMs;
    expect(guessProbability(perMinute, 600, DOCUMENTED_LIVE_CODES, 8)).toBeLessThanOrEqual(GUESS_TARGET);
    const n = maxLiveCodes(perMinute, 600, 8);
    expect(n).toBe(255);
    expect(guessProbability(perMinute, 600, n, 8)).toBeLessThan(1e-6);
    expect(guessProbability(perMinute, 600, n + 1, 8)).toBeGreaterThanOrEqual(1e-6);
    expect(guessProbability(perMinute, 600, 100, 8)).toBeCloseTo(3.90625e-7, 12);
    expect(guessProbability(10, 600, 1e4, 8)).toBeCloseTo(3.90625e-5, 10);
    expect(perIp.max).toBeLessThan(global.max);
  });

  it('the page built from the default config refuses the (limit+1)-th failure, per address and globally', async () => {
    const h = await harness({ limits: 'defaults', trustProxy: '127.0.0.1' });
    const { perIp, global } = h.config.codeEntryLimits;
    // a looser derivation fails here before the loop below would take long
    expect(
      guessProbability((global.max * 60_000) / global.windowMs, CODE_TTL_S, DOCUMENTED_LIVE_CODES, 8),
    ).toBeLessThanOrEqual(GUESS_TARGET);
    const f = await h.startFlow();
    const c = h.client();
    const from = (i: number) => ({ 'x-forwarded-for': `198.51.100.${i}` });
    let failures = 0;
    let address = 0;
    while (failures < global.max) {
      address++;
      const n = Math.min(perIp.max, global.max - failures);
      for (let i = 0; i < n; i++) expect((await c.enter('BCDF-GHJK', from(address))).statusCode).toBe(400);
      failures += n;
      // the (perIp.max + 1)-th failure of one address is refused, and costs the global budget nothing
      if (n === perIp.max) expect((await c.enter('BCDF-GHJK', from(address))).statusCode).toBe(429);
    }
    // the (global.max + 1)-th failure, from an address that has not tried yet: refused, even with the right code
    expect((await c.enter(f.code, from(address + 1))).statusCode).toBe(429);
    expect(await h.metrics.value('devicegate_code_entry_failures_total')).toBe(global.max);
  });

  it('trips the per-address limit after N failures, ignores forged X-Forwarded-For, and a success does not reset it', async () => {
    const h = await harness({ limits: { ...GENEROUS, perIp: 5 } });
    const f = await h.startFlow();
    const c = h.client({ remoteAddress: '203.0.113.9' });
    const wrong = (i: number) => `BCDF-GH${'JKLMNPQRST'[i]}${'JKLMNPQRST'[i]}`;
    for (let i = 0; i < 4; i++) expect((await c.enter(wrong(i))).statusCode).toBe(400);
    // a success in between neither counts nor resets
    expect(isConfirmPage(await c.enter(f.code), f.deviceId)).toBe(true);
    expect((await c.enter(wrong(4))).statusCode).toBe(400);
    const limited = await c.enter(wrong(5));
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(limited.body).toContain('Too many codes were tried');
    // even the right code is refused now: a limited client learns nothing
    expect((await c.enter(f.code)).statusCode).toBe(429);
    expect((await c.decide(f.code, 'deny')).statusCode).toBe(429);
    expect(h.lastReply(f.deviceId)?.status).toBe('pending');
    // X-Forwarded-For is not believed without a trusted proxy
    for (let i = 0; i < 3; i++) {
      const res = await c.enter(wrong(i), { 'x-forwarded-for': `198.51.100.${i + 1}` });
      expect(res.statusCode).toBe(429);
    }
    // another address is not affected
    const other = h.client({ remoteAddress: '203.0.113.10' });
    expect(isConfirmPage(await other.enter(f.code), f.deviceId)).toBe(true);
    // the window passes
    h.clock.advance(60_000);
    expect(isConfirmPage(await c.enter(f.code), f.deviceId)).toBe(true);
  });

  it('trips the global limit across many addresses behind a trusted proxy', async () => {
    const h = await harness({
      trustProxy: '127.0.0.1',
      limits: { perIp: 5, global: 8 },
    });
    const f = await h.startFlow();
    const c = h.client();
    // behind the proxy, X-Forwarded-For is the client: one address trips its own limit...
    for (let i = 0; i < 5; i++) {
      expect((await c.enter('BCDF-GHJK', { 'x-forwarded-for': '198.51.100.1' })).statusCode).toBe(400);
    }
    expect((await c.enter('BCDF-GHJK', { 'x-forwarded-for': '198.51.100.1' })).statusCode).toBe(429);
    // ...and others are still served until the global budget (8) is spent
    for (let i = 2; i <= 4; i++) {
      expect((await c.enter('BCDF-GHJK', { 'x-forwarded-for': `198.51.100.${i}` })).statusCode).toBe(400);
    }
    const limited = await c.enter(f.code, { 'x-forwarded-for': '198.51.100.99' });
    expect(limited.statusCode).toBe(429);
    expect(await h.metrics.value('devicegate_code_entry_failures_total')).toBe(8);
    h.clock.advance(60_000);
    expect(isConfirmPage(await c.enter(f.code, { 'x-forwarded-for': '198.51.100.99' }), f.deviceId)).toBe(
      true,
    );
  });

  it('caps POSTs and callbacks per address and route (flood guard), with the same page and Retry-After', async () => {
    const h = await harness();
    const max = h.config.codeEntryLimits.requestsPerMinute;
    const f = await h.startFlow();
    const c = h.client({ remoteAddress: '203.0.113.77' });
    await c.get('/device');
    for (let i = 0; i < max; i++) expect(isConfirmPage(await c.enter(f.code), f.deviceId)).toBe(true);
    for (let i = 0; i < max; i++) expect((await c.get('/oauth/callback?state=x')).statusCode).toBe(400);
    expect((await c.get('/oauth/callback?state=x')).statusCode).toBe(429);
    const flooded = await c.enter(f.code);
    expect(flooded.statusCode).toBe(429);
    expect(Number(flooded.headers['retry-after'])).toBeGreaterThan(0);
    expect(flooded.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(flooded.headers['x-frame-options']).toBe('DENY');
    expect(flooded.body).toContain('Too many');
    // the entry page itself is not capped, and other addresses are not affected
    expect((await c.get('/device')).statusCode).toBe(200);
    expect(isConfirmPage(await h.client({ remoteAddress: '203.0.113.78' }).enter(f.code), f.deviceId)).toBe(
      true,
    );
  });

  it('holds the limits across instances that share Redis', async () => {
    const redisServer = await startRedis();
    const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    try {
      const limits = { ...GENEROUS, perIp: 3 };
      const keyPrefix = `dgtest-${randomBytes(4).toString('hex')}:`;
      const a = await harness({ limits, redis, redisUrl: redisServer.url, keyPrefix });
      const b = await harness({ limits, redis, redisUrl: redisServer.url, keyPrefix });
      // one clock for both instances, as NTP would give them
      b.clock.set(a.clock.now());
      const ca = a.client({ remoteAddress: '203.0.113.50' });
      const cb = b.client({ remoteAddress: '203.0.113.50' });
      expect((await ca.enter('BCDF-GHJK')).statusCode).toBe(400);
      expect((await cb.enter('BCDF-GHJK')).statusCode).toBe(400);
      expect((await ca.enter('BCDF-GHJK')).statusCode).toBe(400);
      expect((await cb.enter('BCDF-GHJK')).statusCode).toBe(429);
      expect((await ca.enter('BCDF-GHJK')).statusCode).toBe(429);
    } finally {
      redis.disconnect();
    }
  });
});

describe('scanning never locks out (issue 11, finding 1)', () => {
  /** The path and query of the QR link the device was given. */
  function scannedLink(h: Harness, deviceId: string): string {
    const reply = h.lastReply(deviceId);
    if (reply?.status !== 'pending' || reply.verification_uri_complete === undefined)
      throw new Error('no link');
    const u = new URL(reply.verification_uri_complete);
    expect(u.origin).toBe(PUBLIC_URL);
    return `${u.pathname}${u.search}`;
  }
  const proofOf = (link: string) => new URL(link, PUBLIC_URL).searchParams.get('k')!;
  /** The same proof with its first character changed (the last one holds two padding bits). */
  const forged = (k: string) => `${k[0] === 'A' ? 'B' : 'A'}${k.slice(1)}`;

  it('with the global limit tripped by wrong typed codes from two addresses, a third person who scans the link sees the confirm page and approves; typed codes and a wrong k are still refused', async () => {
    const h = await harness({ limits: 'defaults' });
    const { perIp, global } = h.config.codeEntryLimits;
    expect(2 * perIp.max).toBe(global.max);
    const f = await h.startFlow({ device: { name: 'Kitchen radio' } });
    const other = await h.startFlow();
    const link = scannedLink(h, f.deviceId);
    expect(link).toMatch(/^\/device\?user_code=[A-Z]{4}-[A-Z]{4}&k=[A-Za-z0-9_-]{30}$/);
    for (const address of ['198.51.100.1', '198.51.100.2']) {
      const attacker = h.client({ remoteAddress: address });
      for (let i = 0; i < perIp.max; i++) expect((await attacker.enter('BCDF-GHJK')).statusCode).toBe(400);
    }
    const person = h.client({ remoteAddress: '203.0.113.30' });
    // the typed path is closed for everyone, even with the right code
    expect((await person.enter(f.code)).statusCode).toBe(429);
    // a wrong k (forged, or another flow's) is the typed path: the pre-filled entry form, then 429
    const k = proofOf(link);
    for (const wrong of [forged(k), proofOf(scannedLink(h, other.deviceId))]) {
      const res = await person.get(`/device?user_code=${f.code}&k=${wrong}`);
      expect(res.statusCode).toBe(200);
      expect(res.body).toContain(`value="${f.code}"`);
      expect(res.body).not.toContain('Is this your device?');
      const decision = { csrf: person.csrf!, user_code: f.code, k: wrong, decision: 'approve' };
      expect((await person.post('/device/decision', decision)).statusCode).toBe(429);
    }
    expect(
      (await person.post('/device/decision', { csrf: person.csrf!, user_code: f.code, decision: 'approve' }))
        .statusCode,
    ).toBe(429);
    expect(h.lastReply(f.deviceId)?.status).toBe('pending');

    // the scanned link: the confirm page at once, its form carrying the proof; Approve goes to the IdP
    const confirm = await person.get(link);
    expect(isConfirmPage(confirm, f.deviceId)).toBe(true);
    expect(confirm.body).toContain('Kitchen radio');
    expect(confirm.body).toContain(`<input type="hidden" name="k" value="${k}" />`);
    const approved = await person.post('/device/decision', {
      csrf: person.csrf!,
      user_code: f.code,
      k,
      decision: 'approve',
    });
    expect(approved.statusCode).toBe(303);
    const callback = await throughIdp(approved.headers.location as string, 'approve');
    const done = await person.get(local(callback));
    expect(done.headers.location).toMatch(doneAt('authorized'));
    expect(h.lastReply(f.deviceId)).toMatchObject({ status: 'authorized' });
    // only the typed failures were counted; the link is dead once used (the entry form, as for any code)
    expect(await h.metrics.value('devicegate_code_entry_failures_total')).toBe(global.max);
    expect((await person.get(link)).body).not.toContain('Is this your device?');
    // and the limit still holds for typed codes
    expect((await person.enter(other.code)).statusCode).toBe(429);
  });

  it('a made-up k is no oracle: the same answer for known and unknown codes, nothing counted, nothing saved', async () => {
    const h = await harness({ limits: { perIp: 2, global: 1000 } });
    const f = await h.startFlow();
    const k = proofOf(scannedLink(h, f.deviceId));
    const c = h.client({ remoteAddress: '203.0.113.40' });
    const answers: LightMyRequestResponse[] = [];
    for (let i = 0; i < 10; i++) {
      for (const code of [f.code, 'BCDF-GHJK'])
        answers.push(await c.get(`/device?user_code=${code}&k=${forged(k)}`));
    }
    const shape = (res: LightMyRequestResponse) =>
      `${res.statusCode} ${res.body.replace(/name="csrf" value="[^"]+"/, '').replace(/value="[A-Z]{4}-[A-Z]{4}"/, '')}`;
    for (const res of answers) expect(shape(res)).toBe(shape(answers[0]!));
    expect(answers[0]!.body).toContain('action="/device"');
    // nothing was counted: this address still has its whole budget for typed codes
    expect((await c.enter('BCDF-GHJK')).statusCode).toBe(400);
    expect((await c.enter('BCDF-GHJK')).statusCode).toBe(400);
    expect((await c.enter('BCDF-GHJK')).statusCode).toBe(429);
    // and a decision with a wrong k is counted like any typed code: no free guesses
    const d = h.client({ remoteAddress: '203.0.113.41' });
    await d.get('/device');
    for (let i = 0; i < 2; i++) {
      const res = await d.post('/device/decision', {
        csrf: d.csrf!,
        user_code: 'BCDF-GHJK',
        k: forged(k),
        decision: 'deny',
      });
      expect(res.statusCode).toBe(400);
    }
    const limited = await d.post('/device/decision', {
      csrf: d.csrf!,
      user_code: f.code,
      k: forged(k),
      decision: 'deny',
    });
    expect(limited.statusCode).toBe(429);
    expect(h.lastReply(f.deviceId)?.status).toBe('pending');
    expect(await h.metrics.value('devicegate_code_entry_failures_total')).toBe(4);
  });

  it("a link made for an earlier flow that held the same code (another expiry) does not open this flow's confirm page", async () => {
    const h = await harness();
    const f = await h.startFlow();
    const flow = (await h.store.get(f.deviceId, f.rid))!.flow;
    // what the gateway signed for a flow with this code that expires a minute earlier: a valid proof, another flow
    const earlier = scanProof(deriveKeys(SECRET), f.code.replace('-', ''), flow.expiresAt - 60_000);
    const res = await h.client().get(`/device?user_code=${f.code}&k=${earlier}`);
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain('Is this your device?');
    expect(res.body).toContain(`value="${f.code}"`);
    expect(isConfirmPage(await h.client().get(scannedLink(h, f.deviceId)), f.deviceId)).toBe(true);
  });

  it('serves and accepts codes of DEVICEGATE_USER_CODE_LENGTH letters, typed or scanned', async () => {
    const h = await harness({ limits: { perIp: 1, global: 1 }, userCodeLength: 10 });
    const f = await h.startFlow();
    expect(f.code).toMatch(/^[A-Z]{4}-[A-Z]{4}-[A-Z]{2}$/);
    expect((await h.client().get('/device')).body).toContain('placeholder="XXXX-XXXX-XX"');
    const typed = h.client({ remoteAddress: '203.0.113.50' });
    expect(isConfirmPage(await typed.enter(f.code.replaceAll('-', ' ').toLowerCase()), f.deviceId)).toBe(
      true,
    );
    // an 8-letter code is just a code no flow holds, and spends the (one) failure
    expect((await typed.enter('BCDF-GHJK')).statusCode).toBe(400);
    expect((await typed.enter(f.code)).statusCode).toBe(429);
    const scanned = await h.client().get(scannedLink(h, f.deviceId));
    expect(isConfirmPage(scanned, f.deviceId)).toBe(true);
  });
});

describe('the OAuth callback (C.23, C.24)', () => {
  it('completes a real sign-in once: the device gets a token the IdP accepts, and a replay is refused', async () => {
    const h = await harness();
    const f = await h.startFlow({ scope: 'openid profile' });
    const c = h.client();
    const callback = await throughIdp(await approve(c, f.code), 'approve');
    expect(callback.searchParams.get('state')).toBeTruthy();
    const res = await c.get(local(callback));
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toMatch(doneAt('authorized'));
    const reply = h.lastReply(f.deviceId);
    expect(reply).toMatchObject({ status: 'authorized', token_type: expect.stringMatching(/^bearer$/i) });
    const accessToken = (reply as { access_token: string }).access_token;
    expect((await userinfo(accessToken)).status).toBe(200);
    const done = await c.get(res.headers.location as string);
    expect(done.body).toContain('Your device is connected; you can close this page.');

    // the same callback URL again from the same browser (a reload): the state is spent
    const redemptions = idp.stats.redemptions.get('authorization_code') ?? 0;
    const publishedBefore = h.published.length;
    const replay = await c.get(local(callback));
    expect(replay.statusCode).toBe(400);
    expect(replay.body).toContain('This sign-in link is no longer valid');
    expect(idp.stats.redemptions.get('authorization_code') ?? 0).toBe(redemptions);
    expect(h.published.length).toBe(publishedBefore);
    expectNoSecretsInResponses(h);
  });

  it('refuses a missing state, a forged state, another browser and a forged session; the real one still works after (finding 5)', async () => {
    const h = await harness();
    const f = await h.startFlow();
    const c = h.client();
    const callback = await throughIdp(await approve(c, f.code), 'approve');
    const code = callback.searchParams.get('code')!;
    const iss = callback.searchParams.get('iss') ?? idp.issuer;
    const stranger = h.client();
    const otherSession = h.client();
    await otherSession.get('/device'); // a browser with its own valid session
    const redemptions = idp.stats.redemptions.get('authorization_code') ?? 0;
    const cases: Array<[string, () => Promise<LightMyRequestResponse>]> = [
      ['no state', () => c.get(`/oauth/callback?code=${code}&iss=${encodeURIComponent(iss)}`)],
      [
        'forged state',
        () =>
          c.get(
            `/oauth/callback?code=${code}&state=${randomBytes(32).toString('base64url')}&iss=${encodeURIComponent(iss)}`,
          ),
      ],
      ['no session (a stolen link)', () => stranger.get(local(callback))],
      ['another browser session (a planted link)', () => otherSession.get(local(callback))],
      [
        'a session cookie not signed by us',
        () =>
          stranger.get(local(callback), { cookie: `dg_session=${randomBytes(32).toString('base64url')}` }),
      ],
      [
        'the old per-flow state cookie, planted',
        () => otherSession.get(local(callback), { cookie: `dg_state=${callback.searchParams.get('state')}` }),
      ],
    ];
    for (const [what, attempt] of cases) {
      const res = await attempt();
      expect(res.statusCode, what).toBe(400);
      expect(res.body, what).toContain('This sign-in link is no longer valid');
      expect(res.headers['set-cookie'], what).toBeUndefined();
      expect(h.lastReply(f.deviceId)?.status, what).toBe('pending');
    }
    expect(idp.stats.redemptions.get('authorization_code') ?? 0).toBe(redemptions);
    const ok = await c.get(local(callback));
    expect(ok.headers.location).toMatch(doneAt('authorized'));
    expect(h.lastReply(f.deviceId)?.status).toBe('authorized');
    expectNoSecretsInResponses(h);
  });

  it('one browser approves two devices: both callbacks complete, in either order (finding 6)', async () => {
    const h = await harness();
    const c = h.client();
    const first = await h.startFlow();
    const second = await h.startFlow();
    // both confirm pages open, both approved, before either sign-in comes back
    const firstAuthorize = await approve(c, first.code);
    const secondAuthorize = await approve(c, second.code);
    const secondCallback = await throughIdp(secondAuthorize, 'approve');
    const firstCallback = await throughIdp(firstAuthorize, 'approve');
    // a crossed callback from another browser in between spends nothing
    const other = h.client();
    await other.get('/device');
    expect((await other.get(local(firstCallback))).statusCode).toBe(400);
    expect((await c.get(local(secondCallback))).headers.location).toMatch(doneAt('authorized'));
    expect((await c.get(local(firstCallback))).headers.location).toMatch(doneAt('authorized'));
    expect(h.lastReply(first.deviceId)?.status).toBe('authorized');
    expect(h.lastReply(second.deviceId)?.status).toBe('authorized');
    expectNoSecretsInResponses(h);
  });

  it('a store hiccup during the callback: 503, the state survives, and the retry completes (finding 7)', async () => {
    const redisServer = await startRedis();
    const redis = new Redis(redisServer.url, RedisStore.clientOptions());
    const admin = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    try {
      const h = await harness({ redis, redisUrl: redisServer.url });
      const f = await h.startFlow();
      const c = h.client();
      const callback = await throughIdp(await approve(c, f.code), 'approve');
      // Redis stops taking writes for longer than the gateway's command deadline (1 s): reads still answer, so the
      // callback finds its state and then fails on the lease — as in a failover or a stall under load
      await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
      const failed = await c.get(local(callback));
      expect(failed.statusCode).toBe(503);
      expect(h.lastReply(f.deviceId)?.status).toBe('pending');
      await waitForWrites(admin);
      const retry = await c.get(local(callback));
      expect(retry.headers.location).toMatch(doneAt('authorized'));
      expect(h.lastReply(f.deviceId)?.status).toBe('authorized');
      // and it is spent now
      expect((await c.get(local(callback))).statusCode).toBe(400);
    } finally {
      redis.disconnect();
      admin.disconnect();
    }
  });

  it('caps the devices one person approves per hour: the device gets access_denied and the page says why', async () => {
    const h = await harness({ approvalsPerPerson: 2 });
    // the cap counts per clock hour: start just after one begins, so the first three sign-ins share it
    h.clock.set(Math.ceil(h.clock.now() / HOUR_MS) * HOUR_MS + 1000);
    const c = h.client();
    const signIn = async () => {
      const f = await h.startFlow({ scope: 'openid' });
      const res = await c.get(local(await throughIdp(await approve(c, f.code), 'approve')));
      return { f, location: res.headers.location };
    };
    expect((await signIn()).location).toMatch(doneAt('authorized'));
    expect((await signIn()).location).toMatch(doneAt('authorized'));
    const over = await signIn();
    expect(over.location).toBe('/device/done?result=capped');
    const reply = h.lastReply(over.f.deviceId);
    expect(reply).toMatchObject({ status: 'error', error: 'access_denied' });
    expect(reply).not.toHaveProperty('access_token');
    const page = await c.get(over.location as string);
    expect(page.body).toContain('You have approved too many devices in the last hour');
    expect(await h.metrics.value('devicegate_approvals_capped_total')).toBe(1);
    // the next clock hour the person may approve again
    h.clock.advance(HOUR_MS);
    expect((await signIn()).location).toMatch(doneAt('authorized'));
    expectNoSecretsInResponses(h);
  });

  it('a device cannot keep its flows out of the cap by leaving openid out of its scope', async () => {
    const h = await harness({ approvalsPerPerson: 1 });
    h.clock.set(Math.ceil(h.clock.now() / HOUR_MS) * HOUR_MS + 1000);
    const c = h.client();
    const signIn = async () => {
      const f = await h.startFlow({ scope: 'profile' });
      const toIdp = await approve(c, f.code);
      // the gateway asks the identity provider for an ID token anyway: the sign-in names the person
      expect(new URL(toIdp).searchParams.get('scope')).toBe('openid profile');
      const res = await c.get(local(await throughIdp(toIdp, 'approve')));
      return { f, location: res.headers.location };
    };
    expect((await signIn()).location).toMatch(doneAt('authorized'));
    const over = await signIn();
    expect(over.location).toBe('/device/done?result=capped');
    expect(h.lastReply(over.f.deviceId)).toMatchObject({ status: 'error', error: 'access_denied' });
  });

  it('DEVICEGATE_APPROVALS_PER_PERSON=0 caps nothing', async () => {
    const h = await harness({ approvalsPerPerson: 0 });
    const c = h.client();
    for (let i = 0; i < 3; i++) {
      const f = await h.startFlow({ scope: 'openid' });
      const res = await c.get(local(await throughIdp(await approve(c, f.code), 'approve')));
      expect(res.headers.location).toMatch(doneAt('authorized'));
    }
  });

  it('error=access_denied tells the device access_denied at once', async () => {
    const h = await harness();
    const f = await h.startFlow();
    const c = h.client();
    const callback = await throughIdp(await approve(c, f.code), 'deny');
    expect(callback.searchParams.get('error')).toBe('access_denied');
    const res = await c.get(local(callback));
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toMatch(doneAt('denied'));
    expect(h.lastReply(f.deviceId)).toMatchObject({ status: 'error', error: 'access_denied' });
    expect((await c.get(res.headers.location as string)).body).toContain('You denied the request');
    expectNoSecretsInResponses(h);
  });

  it("an error callback (invalid_scope): the IdP's error and description are logged, the person reads why in plain words, the device is told invalid_scope", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const h = await harness({ log: createLogger('info', sink) });
    const f = await h.startFlow();
    const c = h.client();
    const authorize = new URL(await approve(c, f.code));
    // what an IdP sends back when the client may not have a scope (RFC 6749 §4.1.2.1), with RFC 9207's `iss`
    const description = 'The client is not allowed the scope "admin".\n<b>forged</b>';
    const callback = new URL(CALLBACK);
    callback.searchParams.set('error', 'invalid_scope');
    callback.searchParams.set('error_description', description);
    callback.searchParams.set('state', authorize.searchParams.get('state')!);
    callback.searchParams.set('iss', idp.issuer);
    const res = await c.get(local(callback));
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/device/done?result=failed&reason=invalid_scope');
    expect(h.lastReply(f.deviceId)).toMatchObject({ status: 'error', error: 'invalid_scope' });
    const page = (await c.get(res.headers.location as string)).body;
    expect(page).toContain('The identity provider does not allow what the device asked for');
    expect(page).not.toContain('admin');
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toContainEqual(
      expect.objectContaining({
        msg: 'the identity provider refused the sign-in',
        idpError: 'invalid_scope',
        idpErrorDescription: 'The client is not allowed the scope "admin".?<b>forged</b>',
      }),
    );
  });

  it('a callback after the flow expired tells the device expired_token and redeems nothing', async () => {
    const h = await harness();
    const f = await h.startFlow();
    const c = h.client();
    const callback = await throughIdp(await approve(c, f.code), 'approve');
    h.clock.advance((CODE_TTL_S + 1) * 1000);
    const redemptions = idp.stats.redemptions.get('authorization_code') ?? 0;
    const res = await c.get(local(callback));
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/device/done?result=expired');
    expect(h.lastReply(f.deviceId)).toMatchObject({ status: 'error', error: 'expired_token' });
    expect(idp.stats.redemptions.get('authorization_code') ?? 0).toBe(redemptions);
    expect((await c.get(res.headers.location as string)).body).toContain('The request expired');
    expectNoSecretsInResponses(h);
  });

  it('a device key that fails at delivery: the callback answers the failed page (not 500), the device gets one invalid_request, nothing retries', async () => {
    const h = await harness();
    const f = await h.startFlow();
    // the flow as an older gateway stored it, with a 1024-bit key its check at req/authorize let through
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      format: 'jwk',
    }) as PublicJwk;
    const current = (await h.store.get(f.deviceId, f.rid))!;
    await h.store.update({ ...current.flow, jwk: weak }, current.version, { now: h.clock.now() });
    const c = h.client();
    const callback = await throughIdp(await approve(c, f.code), 'approve');
    const publishedBefore = h.published.length;
    const res = await c.get(local(callback));
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe('/device/done?result=failed&reason=invalid_request');
    const told = h.published.slice(publishedBefore).filter((p) => p.deviceId === f.deviceId);
    expect(told.map((p) => p.reply)).toEqual([
      {
        v: 1,
        rid: f.rid,
        status: 'error',
        error: 'invalid_request',
        error_description:
          'the device key could not be used (jwk: RSA keys must be at least 2048 bits); authorize again with another key',
      },
    ]);
    const stored = (await h.store.get(f.deviceId, f.rid))!.flow;
    expect(stored).toMatchObject({ state: 'failed', deliveredAt: expect.any(Number) });
    // nothing is due: the scheduler's delivery retry (every lease) has nothing to retry
    h.clock.advance(3 * h.config.leaseMs);
    expect(await h.store.claimDue(h.clock.now(), h.config.leaseMs, 10)).toEqual([]);
    expectNoSecretsInResponses(h);
  });

  it("refuses an upstream code already redeemed for another flow (the other flow's state, the first flow's code)", async () => {
    const h = await harness();
    const c = h.client();
    const first = await h.startFlow();
    const firstCallback = await throughIdp(await approve(c, first.code), 'approve');
    expect((await c.get(local(firstCallback))).headers.location).toMatch(doneAt('authorized'));

    const second = await h.startFlow();
    const secondCallback = await throughIdp(await approve(c, second.code), 'approve');
    const reused = new URL(secondCallback);
    reused.searchParams.set('code', firstCallback.searchParams.get('code')!);
    const res = await c.get(local(reused));
    expect(res.statusCode).toBe(303);
    // invalid_grant from the upstream: the sign-in must start again (the upstream client maps it to expired_token)
    expect(res.headers.location).toBe('/device/done?result=expired');
    const reply = h.lastReply(second.deviceId);
    expect(reply).toMatchObject({ status: 'error', error: 'expired_token' });
    expect(reply).not.toHaveProperty('access_token');
    const page = await c.get(res.headers.location as string);
    expect(page.body).toContain('The request expired');
    expect(page.body).not.toMatch(/invalid_grant|grant request is invalid/i);
    expectNoSecretsInResponses(h);
  });
});

describe('the outcome page names the device (issue 12)', () => {
  it('after Deny and after a sign-in: the name and id the confirm page showed; a forged, stale or misused d names nothing', async () => {
    const h = await harness();
    const c = h.client();
    const denied = await h.startFlow({ device: { name: 'Kitchen radio' } });
    await c.enter(denied.code);
    const deniedAt = (await c.decide(denied.code, 'deny')).headers.location as string;
    const deniedPage = await c.get(deniedAt);
    expect(deniedPage.body).toContain('Request denied');
    expect(deniedPage.body).toMatch(
      /<dd>Kitchen radio<\/dd>\s*<dt>Device id<\/dt>\s*<dd><code>dev-\d+<\/code>/,
    );
    expect(deniedPage.body).toContain(`<code>${denied.deviceId}</code>`);

    const f = await h.startFlow({ device: { name: 'Living room TV' } });
    const callback = await throughIdp(await approve(c, f.code), 'approve');
    const doneAt = (await c.get(local(callback))).headers.location as string;
    const done = await c.get(doneAt);
    expect(done.body).toContain('Living room TV');
    expect(done.body).toContain(`<code>${f.deviceId}</code>`);
    // the name travels sealed: not readable in the URL
    expect(doneAt).not.toContain('Living');

    const d = new URL(doneAt, PUBLIC_URL).searchParams.get('d')!;
    const namesNothing = async (url: string) => {
      const res = await c.get(url);
      expect(res.statusCode, url).toBe(200);
      expect(res.body, url).not.toContain('<dl class="facts">');
      expect(res.body, url).not.toContain(f.deviceId);
    };
    await namesNothing(`/device/done?result=denied&d=${d}`); // another outcome
    await namesNothing(`/device/done?result=authorized&d=${d.slice(0, -2)}AA`); // tampered
    await namesNothing(`/device/done?result=authorized&d=${encodeURIComponent('<b>x</b>')}`);
    h.clock.advance(11 * 60_000);
    await namesNothing(doneAt); // stale
  });
});

describe('languages (Accept-Language)', () => {
  it('picks the language by weight and primary subtag, English by default', async () => {
    const h = await harness();
    for (const [accept, lang] of [
      ['de', 'de'],
      ['de-DE,de;q=0.9,en;q=0.8', 'de'],
      ['fr-FR, de-AT;q=0.7, en;q=0.5', 'de'],
      ['en-GB,en;q=0.9,de;q=0.8', 'en'],
      ['de;q=0, en;q=0.5', 'en'],
      ['fr, it', 'en'],
      ['*', 'en'],
      ['', 'en'],
    ] as const) {
      const res = await h.client().get('/device', accept === '' ? {} : { 'accept-language': accept });
      expect(res.body, accept).toContain(`<html lang="${lang}">`);
      expect(res.body, accept).toContain(lang === 'de' ? 'Gerät verbinden' : 'Connect a device');
      expect(String(res.headers.vary), accept).toMatch(/accept-language/i);
    }
  });

  it('every page of a flow in German: confirm, refusal, outcome, error', async () => {
    const h = await harness();
    const de = { 'accept-language': 'de-DE' };
    const c = h.client();
    const f = await h.startFlow({ device: { name: 'Fernseher' }, scope: 'openid offline_access' });
    h.clock.advance(2 * 60_000);
    await c.get('/device', de);
    const confirm = await c.post('/device', { csrf: c.csrf!, user_code: f.code }, de);
    for (const expected of [
      'Ist das Ihr Gerät?',
      '<dd>vor 2 Minuten</dd>',
      `<dd>in ${CODE_TTL_S / 60 - 2} Minuten</dd>`,
      'der Netzwerkadresse 192.0.2.17',
      'seinen Zugriff behalten',
      '>Ablehnen</button>',
      '>Zustimmen</button>',
      `Sie melden sich bei ${new URL(idp.issuer).host} an.`,
    ]) {
      expect(confirm.body).toContain(expected);
    }
    const refused = await c.post('/device', { csrf: c.csrf!, user_code: 'bcdf ghjk' }, de);
    expect(refused.statusCode).toBe(400);
    expect(refused.body).toContain('Dieser Code ist ungültig.');
    expect(typedValue(refused)).toBe('BCDF-GHJK');
    const denied = await c.post(
      '/device/decision',
      { csrf: c.csrf!, user_code: f.code, decision: 'deny' },
      de,
    );
    const done = await c.get(denied.headers.location as string, de);
    expect(done.body).toContain('Anfrage abgelehnt');
    expect(done.body).toContain('<dt>Geräte-ID</dt>');
    const csrf = await c.post('/device', { user_code: f.code }, de);
    expect(csrf.statusCode).toBe(403);
    expect(csrf.body).toContain('Dieses Formular ist abgelaufen');
  });
});

describe('unknown paths (issue 12)', () => {
  it('answer an HTML page in the browser language with the security headers; JSON to a client asking for JSON', async () => {
    const h = await harness();
    const c = h.client();
    for (const [url, accept, text] of [
      ['/nope', 'en', 'Page not found'],
      ['/device/nope?user_code=BCDF-GHJK', 'de', 'Seite nicht gefunden'],
    ] as const) {
      const res = await c.get(url, { 'accept-language': accept, accept: 'text/html,*/*;q=0.8' });
      expect(res.statusCode, url).toBe(404);
      expect(res.headers['content-type'], url).toBe('text/html; charset=utf-8');
      expect(res.body, url).toContain(`<html lang="${accept}">`);
      expect(res.body, url).toContain(text);
      expect(res.body, url).toContain('href="/device"');
      expect(res.body, url).not.toContain('BCDF');
      const csp = String(res.headers['content-security-policy']);
      expect(csp, url).toContain("default-src 'none'");
      expect(csp, url).toContain("frame-ancestors 'none'");
      expect(res.headers['x-frame-options'], url).toBe('DENY');
      expect(res.headers['referrer-policy'], url).toBe('no-referrer');
      expect(res.headers['cache-control'], url).toBe('no-store');
      expect(res.headers['x-content-type-options'], url).toBe('nosniff');
    }
    const api = await c.get('/admin/nope', { accept: 'application/json' });
    expect(api.statusCode).toBe(404);
    expect(api.json()).toEqual({ statusCode: 404, error: 'Not Found' });
    // the API-ish paths keep their JSON
    expect((await c.get('/healthz')).json()).toEqual({ status: 'ok' });
  });
});

/**
 * A fast, scriptable fake upstream OAuth server for the benchmarks: just enough of OpenID Connect discovery,
 * RFC 8628 (device authorization and token polling) and the authorization code grant for devicegate's oauth4webapi
 * client to accept it, with no signing, no storage and no pages, so that the gateway and not the upstream is what
 * gets measured. Nothing here is secure; it listens on loopback only.
 *
 * Scripting (admin calls, JSON):
 * - `POST /admin/approve?user_code=…`  the person approves a device flow; answers `{approvedAt}` (this process's
 *   {@link nowMs}).
 * - `GET /admin/now`                    `{now}` for clock-offset estimates.
 * - `GET /admin/report`                 every device and authorization-code flow with its timestamps, and counters.
 * - `POST /admin/reset`                 forgets everything.
 *
 * The bridge flow: `GET /authorize` answers at once with a 302 to `redirect_uri?code=…&state=…` (the person has
 * "approved"); `POST /token` exchanges the code once. Timestamps of each token response are recorded just before
 * the response is written, keyed by user code (device flows) or by `state` (authorization code flows).
 */
import { randomBytes } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { nowMs } from './lib/clock.ts';

export interface FakeUpstreamOptions {
  host?: string;
  /** 0 (default) picks a free port */
  port?: number;
  /** the `interval` sent with each device authorization (seconds, default 5) */
  intervalSeconds?: number;
  /** the `expires_in` of device codes (seconds, default 600) */
  expiresInSeconds?: number;
  /** a poll is early when it comes sooner than `interval − earlyToleranceMs` after the previous one (default 50) */
  earlyToleranceMs?: number;
  /**
   * Answer device authorization and token requests after a delay drawn from `[min, max]` ms (default none), as a
   * hosted provider would: it is what widens the window in which a gateway holds a redeemed token only in memory.
   */
  latencyMs?: { min: number; max: number };
  /** uniform [0, 1) source for the latency draws (default Math.random; the soak passes a seeded one) */
  random?: () => number;
}

/** One RFC 8628 flow as the upstream saw it. Times are {@link nowMs} of the upstream process. */
export interface DeviceFlowRecord {
  userCode: string;
  /** when the device authorization request was answered */
  createdAt: number;
  approvedAt?: number;
  /** arrival time of every token request for this device code */
  polls: number[];
  /** token requests that came sooner than the interval after the previous one (a duplicate poll) */
  early: number;
  /** token requests after the token had been issued */
  afterToken: number;
  /** when the token response was written */
  tokenSentAt?: number;
}

/** One authorization code flow as the upstream saw it. */
export interface CodeFlowRecord {
  state: string;
  authorizedAt: number;
  /** code exchanges (more than one would be a replay) */
  exchanges: number;
  tokenSentAt?: number;
}

export interface FakeUpstreamReport {
  intervalSeconds: number;
  counts: Record<string, number>;
  device: DeviceFlowRecord[];
  code: CodeFlowRecord[];
}

export interface FakeUpstream {
  readonly issuer: string;
  readonly port: number;
  /** the in-process view of what the admin endpoints expose */
  report(): FakeUpstreamReport;
  approve(userCode: string): number | undefined;
  /** The access token issued for that user code's flow, once one was (a judge compares what devices received). */
  issuedToken(userCode: string): string | undefined;
  close(): Promise<void>;
}

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

interface DeviceState extends DeviceFlowRecord {
  deviceCode: string;
  lastPollAt?: number;
  scope: string;
  accessToken?: string;
}

/** Starts the fake upstream; resolves once it listens. */
export async function startFakeUpstream(o: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const host = o.host ?? '127.0.0.1';
  const interval = o.intervalSeconds ?? 5;
  const expiresIn = o.expiresInSeconds ?? 600;
  const tolerance = o.earlyToleranceMs ?? 50;
  const random = o.random ?? Math.random;
  const latency = (): Promise<void> | undefined => {
    if (o.latencyMs === undefined) return undefined;
    const { min, max } = o.latencyMs;
    return new Promise((resolve) => setTimeout(resolve, min + random() * (max - min)));
  };
  const byDeviceCode = new Map<string, DeviceState>();
  const byUserCode = new Map<string, DeviceState>();
  const codes = new Map<string, CodeFlowRecord & { scope: string; used: boolean }>();
  const byState = new Map<string, CodeFlowRecord>();
  const counts: Record<string, number> = {};
  const count = (name: string) => (counts[name] = (counts[name] ?? 0) + 1);
  let issuer = '';

  const metadata = () => ({
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    device_authorization_endpoint: `${issuer}/device_authorization`,
    response_types_supported: ['code'],
    grant_types_supported: ['authorization_code', DEVICE_GRANT],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'none'],
    scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
  });

  const token = (scope: string) => ({
    access_token: randomBytes(32).toString('base64url'),
    token_type: 'Bearer',
    expires_in: 3600,
    scope,
  });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const arrived = nowMs();
    const url = new URL(req.url ?? '/', issuer);
    const path = url.pathname;
    const body = req.method === 'POST' ? new URLSearchParams(await readBody(req)) : new URLSearchParams();

    if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
      count('discovery');
      return json(res, 200, metadata());
    }
    if (req.method === 'POST' && path === '/device_authorization') {
      count('device_authorization');
      await latency();
      const deviceCode = randomBytes(24).toString('base64url');
      let userCode: string;
      do userCode = randomUserCode();
      while (byUserCode.has(userCode));
      const flow: DeviceState = {
        deviceCode,
        userCode,
        scope: body.get('scope') ?? '',
        createdAt: nowMs(),
        polls: [],
        early: 0,
        afterToken: 0,
      };
      byDeviceCode.set(deviceCode, flow);
      byUserCode.set(userCode, flow);
      return json(res, 200, {
        device_code: deviceCode,
        user_code: userCode,
        verification_uri: `${issuer}/device`,
        verification_uri_complete: `${issuer}/device?user_code=${userCode}`,
        expires_in: expiresIn,
        interval,
      });
    }
    if (req.method === 'POST' && path === '/token') {
      count('token');
      const grant = body.get('grant_type');
      if (grant === DEVICE_GRANT) {
        count('token_device_code');
        const flow = byDeviceCode.get(body.get('device_code') ?? '');
        if (flow === undefined) return json(res, 400, { error: 'invalid_grant' });
        flow.polls.push(arrived);
        if (flow.lastPollAt !== undefined && arrived - flow.lastPollAt < interval * 1000 - tolerance) {
          flow.early += 1;
        }
        flow.lastPollAt = arrived;
        // the delay falls between arrival and deciding, where a hosted provider spends its time
        await latency();
        if (flow.tokenSentAt !== undefined) {
          flow.afterToken += 1;
          return json(res, 400, { error: 'invalid_grant' });
        }
        if (flow.approvedAt === undefined) return json(res, 400, { error: 'authorization_pending' });
        flow.tokenSentAt = nowMs();
        const issued = token(flow.scope);
        flow.accessToken = issued.access_token;
        return json(res, 200, issued);
      }
      if (grant === 'authorization_code') {
        count('token_authorization_code');
        const code = codes.get(body.get('code') ?? '');
        if (code === undefined || code.used) {
          if (code !== undefined) code.exchanges += 1;
          return json(res, 400, { error: 'invalid_grant' });
        }
        code.used = true;
        code.exchanges += 1;
        code.tokenSentAt = nowMs();
        return json(res, 200, token(code.scope));
      }
      return json(res, 400, { error: 'unsupported_grant_type' });
    }
    if (req.method === 'GET' && path === '/authorize') {
      count('authorize');
      const redirect = url.searchParams.get('redirect_uri');
      const state = url.searchParams.get('state');
      if (redirect === null || state === null || !URL.canParse(redirect)) {
        return json(res, 400, { error: 'invalid_request' });
      }
      const code = randomBytes(24).toString('base64url');
      const record = {
        state,
        authorizedAt: nowMs(),
        exchanges: 0,
        scope: url.searchParams.get('scope') ?? '',
        used: false,
      };
      codes.set(code, record);
      byState.set(state, record);
      const target = new URL(redirect);
      target.searchParams.set('code', code);
      target.searchParams.set('state', state);
      res.writeHead(302, { location: target.href, 'content-length': 0 });
      res.end();
      return;
    }
    if (path === '/admin/approve') {
      const at = approve(url.searchParams.get('user_code') ?? body.get('user_code') ?? '');
      return at === undefined
        ? json(res, 404, { error: 'unknown user_code' })
        : json(res, 200, { approvedAt: at });
    }
    if (path === '/admin/now') return json(res, 200, { now: nowMs() });
    if (path === '/admin/report') return json(res, 200, report());
    if (path === '/admin/reset' && req.method === 'POST') {
      byDeviceCode.clear();
      byUserCode.clear();
      codes.clear();
      byState.clear();
      for (const k of Object.keys(counts)) delete counts[k];
      return json(res, 200, {});
    }
    json(res, 404, { error: 'not_found' });
  };

  function approve(userCode: string): number | undefined {
    const flow = byUserCode.get(userCode);
    if (flow === undefined) return undefined;
    flow.approvedAt ??= nowMs();
    return flow.approvedAt;
  }

  function report(): FakeUpstreamReport {
    return {
      intervalSeconds: interval,
      counts: { ...counts },
      device: [...byDeviceCode.values()].map(
        ({ deviceCode: _d, lastPollAt: _l, scope: _s, accessToken: _a, ...r }) => r,
      ),
      code: [...byState.values()].map((r) => ({
        state: r.state,
        authorizedAt: r.authorizedAt,
        exchanges: r.exchanges,
        ...(r.tokenSentAt !== undefined && { tokenSentAt: r.tokenSentAt }),
      })),
    };
  }

  const server = createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: 'server_error', detail: String(err) });
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  issuer = `http://${host}:${port}`;
  return {
    issuer,
    port,
    report,
    approve,
    issuedToken: (userCode) => byUserCode.get(userCode)?.accessToken,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function randomUserCode(): string {
  const bytes = randomBytes(8);
  let s = '';
  for (let i = 0; i < 8; i++) s += USER_CODE_ALPHABET[bytes[i]! % USER_CODE_ALPHABET.length];
  return `${s.slice(0, 4)}-${s.slice(4)}`;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

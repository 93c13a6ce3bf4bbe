/**
 * How the upstream client classifies every answer, at every endpoint, through the methods the flow service calls
 * (createUpstream with a fake `fetch`, on fake time): statuses, `Retry-After`, challenges, OAuth error codes, answers
 * that fail oauth4webapi's checks, transport errors and the deadline. The real-HTTP counterpart is
 * test/integration/upstream.test.ts.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { PollOutcome } from '../../src/core/engine.ts';
import { OAuthError, type OAuthErrorCode, UnavailableError } from '../../src/core/errors.ts';
import { createLogger } from '../../src/observability/log.ts';
import { createUpstream } from '../../src/upstream/oauth.ts';
import type { BridgeUpstream, RelayUpstream } from '../../src/upstream/types.ts';
import { FakeTime } from '../helpers/clock.ts';

const ISSUER = 'https://as.example';
const TIMEOUT_MS = 5000;
const METADATA = {
  issuer: ISSUER,
  authorization_endpoint: `${ISSUER}/authorize`,
  token_endpoint: `${ISSUER}/token`,
  device_authorization_endpoint: `${ISSUER}/device`,
  code_challenge_methods_supported: ['S256'],
};
const UPSTREAM_TEXT = 'UPSTREAM-TEXT-NEVER-PASSED-ON';

type Route = (signal: AbortSignal | undefined) => Response | Promise<Response>;

/** A fake upstream behind the `fetch` option: one route per path, and a log of the paths asked for. */
class FakeUpstream {
  readonly routes = new Map<string, Route>([
    ['/.well-known/openid-configuration', () => Response.json(METADATA)],
  ]);
  readonly requests: string[] = [];
  readonly fetch: typeof fetch = async (input, init) => {
    const path = new URL(String(input)).pathname;
    this.requests.push(path);
    const route = this.routes.get(path);
    return route === undefined
      ? new Response('not found', { status: 404 })
      : route(init?.signal ?? undefined);
  };
}

let time: FakeTime;
let fake: FakeUpstream;
let relay: RelayUpstream;
let bridge: BridgeUpstream;

beforeEach(async () => {
  time = new FakeTime();
  fake = new FakeUpstream();
  const common = {
    issuer: ISSUER,
    clientId: 'gw',
    clientSecret: 'gw-secret',
    redirectUri: 'https://gw.example/oauth/callback',
    timeoutMs: TIMEOUT_MS,
    allowInsecure: false,
    log: createLogger('silent'),
    fetch: fake.fetch,
    clock: time,
    timers: time,
  };
  const relayClient = createUpstream({ ...common, mode: 'device' });
  const bridgeClient = createUpstream({ ...common, mode: 'authorization_code' });
  await Promise.all([relayClient.discover(), bridgeClient.discover()]);
  if (relayClient.upstream.kind !== 'device' || bridgeClient.upstream.kind !== 'authorization_code') {
    throw new Error('wrong kinds');
  }
  relay = relayClient.upstream;
  bridge = bridgeClient.upstream;
});

type Endpoint = 'device_authorization' | 'token_poll' | 'code_exchange' | 'refresh';
const ENDPOINTS: readonly Endpoint[] = ['device_authorization', 'token_poll', 'code_exchange', 'refresh'];
const THROWING: readonly Exclude<Endpoint, 'token_poll'>[] = [
  'device_authorization',
  'code_exchange',
  'refresh',
];

interface Failure {
  code: OAuthErrorCode;
  description: string;
}

/** What a throwing endpoint did, as plain data. */
type Seen = 'unavailable' | Failure | { ok: unknown };

const fail = (code: OAuthErrorCode, description: string): Failure => ({ code, description });

function answer(endpoint: Endpoint, route: Route): void {
  fake.routes.set(endpoint === 'device_authorization' ? '/device' : '/token', route);
}

function call(endpoint: Endpoint): Promise<unknown> {
  switch (endpoint) {
    case 'device_authorization':
      return relay.startDeviceAuthorization('openid');
    case 'token_poll':
      return relay.pollDeviceToken('dc-1');
    case 'code_exchange':
      return bridge.exchangeCode(new URLSearchParams({ code: 'c-1', state: 's' }), {
        state: 's',
        codeVerifier: 'v'.repeat(43),
      });
    case 'refresh':
      return bridge.refresh('rt-1');
  }
}

async function seen(p: Promise<unknown>): Promise<Seen> {
  try {
    return { ok: await p };
  } catch (err) {
    if (err instanceof UnavailableError) return 'unavailable';
    if (err instanceof OAuthError) return { code: err.code, description: err.description };
    throw err;
  }
}

function oauthError(error: string, status = 400): Response {
  return Response.json({ error, error_description: UPSTREAM_TEXT }, { status });
}

describe('statuses that mean "unavailable"', () => {
  it.each([429, 500, 503])('HTTP %i: unavailable everywhere, unreachable while polling', async (status) => {
    for (const endpoint of ENDPOINTS) answer(endpoint, () => oauthError('invalid_grant', status));
    for (const endpoint of THROWING) expect(await seen(call(endpoint))).toBe('unavailable');
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable' });
  });

  it('honours Retry-After as delay-seconds, capped at an hour', async () => {
    answer('token_poll', () => new Response(null, { status: 429, headers: { 'retry-after': '7' } }));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable', retryAfterSeconds: 7 });
    answer('token_poll', () => new Response(null, { status: 503, headers: { 'retry-after': '86400' } }));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable', retryAfterSeconds: 3600 });
  });

  it('honours Retry-After as an HTTP date against the injected clock', async () => {
    const at = (ms: number) => new Date(time.now() + ms).toUTCString();
    const retryAt = (date: string) =>
      answer('token_poll', () => new Response(null, { status: 429, headers: { 'retry-after': date } }));
    retryAt(at(30_000));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable', retryAfterSeconds: 30 });
    retryAt(at(-60_000)); // in the past: retry now
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable', retryAfterSeconds: 0 });
    retryAt(at(2 * 3600_000));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable', retryAfterSeconds: 3600 });
    // the same date means less waiting once the clock has moved on
    const date = at(30_000);
    time.advance(20_000);
    retryAt(date);
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable', retryAfterSeconds: 10 });
  });

  it('ignores a Retry-After that is neither seconds nor a date', async () => {
    answer('token_poll', () => new Response(null, { status: 429, headers: { 'retry-after': 'soon' } }));
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable' });
  });

  it('treats a non-OAuth answer (a redirect, an HTML error page) as unavailable', async () => {
    for (const response of [
      () => new Response(null, { status: 302, headers: { location: 'https://elsewhere.example/token' } }),
      () => new Response('<html>Not Found</html>', { status: 404, headers: { 'content-type': 'text/html' } }),
    ]) {
      for (const endpoint of ENDPOINTS) answer(endpoint, response);
      for (const endpoint of THROWING) expect(await seen(call(endpoint))).toBe('unavailable');
      expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable' });
    }
  });
});

describe('transport errors', () => {
  it('a refused connection is unavailable, unreachable while polling', async () => {
    const refused = () => Promise.reject(new TypeError('fetch failed', { cause: new Error('ECONNREFUSED') }));
    for (const endpoint of ENDPOINTS) answer(endpoint, refused);
    for (const endpoint of THROWING) expect(await seen(call(endpoint))).toBe('unavailable');
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'unreachable' });
  });

  it('a hanging upstream is given up at the deadline, on the injected timers', async () => {
    const hang: Route = (signal) =>
      new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason)));
    for (const endpoint of ENDPOINTS) {
      answer(endpoint, hang);
      let done: Seen | undefined;
      const p = seen(call(endpoint)).then((s) => (done = s));
      await time.tick(TIMEOUT_MS - 1);
      expect(done).toBeUndefined();
      await time.tick(1);
      await p;
      expect(done).toEqual(endpoint === 'token_poll' ? { ok: { kind: 'unreachable' } } : 'unavailable');
    }
    expect(time.pending).toBe(0);
  });

  it('clears the deadline once an exchange is over', async () => {
    answer('token_poll', () => oauthError('authorization_pending'));
    await relay.pollDeviceToken('dc-1');
    expect(time.pending).toBe(0);
  });
});

describe('the gateway’s client authentication is refused', () => {
  it('401 with WWW-Authenticate counts as invalid_client: unauthorized_client with our text', async () => {
    const challenge = () =>
      new Response(null, { status: 401, headers: { 'www-authenticate': 'Basic realm="as.example"' } });
    for (const endpoint of ENDPOINTS) answer(endpoint, challenge);
    const client = fail(
      'unauthorized_client',
      'the identity provider does not accept the gateway as a client for this',
    );
    for (const endpoint of THROWING) expect(await seen(call(endpoint))).toEqual(client);
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'error', ...client });
  });
});

describe('a 200 that fails oauth4webapi’s checks', () => {
  const INVALID = fail('server_error', 'the identity provider sent an invalid token response');

  it.each([
    ['no access_token', { token_type: 'Bearer', expires_in: 60 }],
    ['an unknown token_type', { access_token: 'at', token_type: 'mac' }],
  ])('a token response with %s fails the flow (asking again will not help)', async (_what, body) => {
    for (const endpoint of ENDPOINTS) answer(endpoint, () => Response.json(body));
    expect(await seen(call('code_exchange'))).toEqual(INVALID);
    expect(await seen(call('refresh'))).toEqual(INVALID);
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'error', ...INVALID });
  });

  it('a 200 that is not JSON fails the flow at the token endpoint', async () => {
    answer(
      'token_poll',
      () => new Response('<html>sign in</html>', { headers: { 'content-type': 'text/html' } }),
    );
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'error', ...INVALID });
  });

  it('a device authorization without a device_code is unavailable (no promise was made to the device yet)', async () => {
    answer('device_authorization', () =>
      Response.json({ user_code: 'BCDF-GHJK', verification_uri: `${ISSUER}/activate`, expires_in: 600 }),
    );
    expect(await seen(call('device_authorization'))).toBe('unavailable');
  });
});

describe('device authorization values the gateway will not pass on to a device', () => {
  const good = {
    device_code: 'dc-1',
    user_code: 'BCDF-GHJK',
    verification_uri: `${ISSUER}/a`,
    expires_in: 600,
  };
  it.each<[string, Record<string, unknown>]>([
    ['an empty user_code', { user_code: '' }],
    ['a user_code with a control character', { user_code: 'BCDF\nGHJK' }],
    ['a user_code longer than 64 characters', { user_code: 'B'.repeat(65) }],
    ['a device_code longer than 4096 characters', { device_code: 'd'.repeat(4097) }],
    ['a verification_uri that is not http(s)', { verification_uri: 'javascript:alert(1)' }],
    ['an expires_in below one second', { expires_in: 0.5 }],
  ])('%s makes the upstream unavailable for this request', async (_what, change) => {
    answer('device_authorization', () => Response.json({ ...good, ...change }));
    expect(await seen(call('device_authorization'))).toBe('unavailable');
  });
});

describe('good answers', () => {
  it('pass the values on', async () => {
    answer('device_authorization', () =>
      Response.json({
        device_code: 'dc-1',
        user_code: 'BCDF-GHJK',
        verification_uri: `${ISSUER}/a`,
        expires_in: 600,
      }),
    );
    expect(await relay.startDeviceAuthorization('openid')).toEqual({
      deviceCode: 'dc-1',
      userCode: 'BCDF-GHJK',
      verificationUri: `${ISSUER}/a`,
      expiresIn: 600,
      interval: 5,
    });
    answer('token_poll', () =>
      Response.json({ access_token: 'at', token_type: 'bearer', refresh_token: 'rt-2' }),
    );
    const token = { access_token: 'at', token_type: 'Bearer', refresh_token: 'rt-2' };
    expect(await relay.pollDeviceToken('dc-1')).toEqual({ kind: 'token', token });
    expect(await bridge.refresh('rt-1')).toEqual(token);
    expect(await seen(call('code_exchange'))).toEqual({ ok: { token } }); // no ID token: nobody named
  });
});

describe('OAuth error codes, per endpoint', () => {
  const scope = fail('invalid_scope', 'the identity provider does not allow the requested scope');
  const client = fail(
    'unauthorized_client',
    'the identity provider does not accept the gateway as a client for this',
  );
  const denied = fail('access_denied', 'the request was denied');
  const signInDenied = fail('access_denied', 'the sign-in was denied or cancelled');
  const refused = fail('server_error', 'the identity provider refused the request');
  const signInRefused = fail('server_error', 'the identity provider refused the sign-in');
  const poll = (o: Failure): PollOutcome => ({ kind: 'error', ...o });
  const pollRefused = poll(fail('server_error', 'the identity provider refused the token request'));
  const U = 'unavailable';

  // error → [device authorization, token poll, authorization callback, code exchange, refresh]
  const MATRIX: Array<[string, Seen, PollOutcome, Seen, Seen, Seen]> = [
    ['authorization_pending', refused, { kind: 'authorization_pending' }, signInRefused, refused, refused],
    ['slow_down', U, { kind: 'slow_down' }, signInRefused, refused, refused],
    ['access_denied', denied, { kind: 'access_denied' }, signInDenied, denied, denied],
    ['expired_token', refused, { kind: 'expired_token' }, signInRefused, refused, refused],
    [
      'invalid_grant',
      refused,
      { kind: 'invalid_grant' }, // the engine tells a forgotten request from a spent one (engine.test.ts)
      signInRefused,
      fail('expired_token', 'the sign-in expired or was already used; start again'),
      fail('expired_token', 'the authorization expired or was revoked; authorize again'),
    ],
    ['invalid_client', client, poll(client), signInRefused, client, client],
    ['unauthorized_client', client, poll(client), client, client, client],
    ['invalid_scope', scope, pollRefused, scope, scope, scope],
    ['temporarily_unavailable', U, { kind: 'unreachable' }, U, U, U],
    ['login_required', refused, pollRefused, signInDenied, refused, refused],
    ['consent_required', refused, pollRefused, signInDenied, refused, refused],
    ['interaction_required', refused, pollRefused, signInDenied, refused, refused],
    ['account_selection_required', refused, pollRefused, signInDenied, refused, refused],
    ['invalid_request', refused, pollRefused, signInRefused, refused, refused],
    ['something_new', refused, pollRefused, signInRefused, refused, refused],
    ['constructor', refused, pollRefused, signInRefused, refused, refused], // not looked up on a prototype
  ];

  it.each(MATRIX)('%s', async (error, device, polled, callback, exchange, refresh) => {
    for (const endpoint of ENDPOINTS) answer(endpoint, () => oauthError(error));
    expect(await seen(call('device_authorization'))).toEqual(device);
    expect(await relay.pollDeviceToken('dc-1')).toEqual(polled);
    expect(await seen(call('code_exchange'))).toEqual(exchange);
    expect(await seen(call('refresh'))).toEqual(refresh);

    const tokenRequests = fake.requests.filter((p) => p === '/token').length;
    const denial = bridge.exchangeCode(
      new URLSearchParams({ error, error_description: UPSTREAM_TEXT, state: 's' }),
      {
        state: 's',
        codeVerifier: 'v'.repeat(43),
      },
    );
    expect(await seen(denial)).toEqual(callback);
    expect(fake.requests.filter((p) => p === '/token').length).toBe(tokenRequests); // no exchange after an error
  });
});

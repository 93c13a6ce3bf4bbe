/**
 * The tolerated provider deviations (src/upstream/deviations.ts) and configured endpoints (src/upstream/discovery.ts
 * `ConfiguredMetadata`), through the methods the flow service calls: createUpstream with a fake `fetch` that records
 * every request. The end-to-end counterparts, with the gateway and a device, are in
 * test/integration/upstream-providers.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/core/errors.ts';
import { createLogger } from '../../src/observability/log.ts';
import { type UpstreamOptions, createUpstream } from '../../src/upstream/oauth.ts';
import type { RelayUpstream } from '../../src/upstream/types.ts';

const ISSUER = 'https://github.example';
const ENDPOINTS = {
  deviceAuthorization: `${ISSUER}/login/device/code`,
  token: `${ISSUER}/login/oauth/access_token`,
};

interface Seen {
  url: string;
  accept: string | null;
  body: string;
}

function form(fields: Record<string, string>, status = 200): Response {
  return new Response(new URLSearchParams(fields).toString(), {
    status,
    headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
  });
}

/** A relay client over a fake fetch answering `answer(path)`; `seen` records each request. */
function relayClient(
  answer: (path: string) => Response,
  o: Partial<UpstreamOptions> = {},
): { relay: RelayUpstream; seen: Seen[]; status: () => { ready: boolean; detail: string } } {
  const seen: Seen[] = [];
  const client = createUpstream({
    issuer: ISSUER,
    clientId: 'Iv1.github-app',
    mode: 'device',
    redirectUri: 'https://gw.example/oauth/callback',
    timeoutMs: 2000,
    allowInsecure: false,
    log: createLogger('silent'),
    endpoints: ENDPOINTS,
    fetch: async (input, init) => {
      const headers = new Headers(init?.headers);
      seen.push({ url: String(input), accept: headers.get('accept'), body: String(init?.body ?? '') });
      return answer(new URL(String(input)).pathname);
    },
    ...o,
  });
  client.start();
  if (client.upstream.kind !== 'device') throw new Error('not a relay client');
  return { relay: client.upstream, seen, status: () => client.status() };
}

describe('configured endpoints (no discovery)', () => {
  it('uses the configured endpoints, never asks for metadata, and reports them as ready', async () => {
    const { relay, seen, status } = relayClient(() =>
      Response.json({
        device_code: 'dc',
        user_code: 'WDJB-MJHT',
        verification_uri: 'https://github.example/login/device',
        expires_in: 900,
        interval: 5,
      }),
    );
    expect(status()).toMatchObject({ ready: true });
    expect(status().detail).toContain(ENDPOINTS.deviceAuthorization);
    await relay.startDeviceAuthorization('read:user');
    expect(seen.map((s) => s.url)).toEqual([ENDPOINTS.deviceAuthorization]);
    // a public client: the client id in the body, no secret anywhere
    expect(new URLSearchParams(seen[0]!.body).get('client_id')).toBe('Iv1.github-app');
  });

  it('refuses configured plain-http endpoints unless plain http is allowed', async () => {
    const { relay, status } = relayClient(() => Response.json({}), {
      endpoints: { deviceAuthorization: 'http://github.example/d', token: 'http://github.example/t' },
    });
    expect(status()).toMatchObject({ ready: false });
    await expect(relay.startDeviceAuthorization('')).rejects.toBeInstanceOf(UnavailableError);
  });
});

describe('tolerated deviations (src/upstream/deviations.ts)', () => {
  it('GitHub: reads form-encoded answers (numbers included) and always asks for JSON', async () => {
    const { relay, seen } = relayClient((path) =>
      path.endsWith('/code')
        ? form({
            device_code: 'dc',
            user_code: 'WDJB-MJHT',
            verification_uri: 'https://github.example/login/device',
            expires_in: '900',
            interval: '7',
          })
        : form({ access_token: 'gho_x', token_type: 'bearer', scope: 'read:user' }),
    );
    const da = await relay.startDeviceAuthorization('read:user');
    expect(da).toMatchObject({ deviceCode: 'dc', userCode: 'WDJB-MJHT', expiresIn: 900, interval: 7 });
    const outcome = await relay.pollDeviceToken('dc');
    expect(outcome).toMatchObject({ kind: 'token', token: { access_token: 'gho_x', token_type: 'Bearer' } });
    expect(seen.every((s) => s.accept === 'application/json')).toBe(true);
  });

  it('GitHub: an HTTP 200 with an error field is that OAuth error (pending, slow_down with its interval, expired, denied)', async () => {
    const answers: Record<string, Record<string, unknown>> = {
      pending: { error: 'authorization_pending' },
      slow: { error: 'slow_down', interval: 10 },
      slowHuge: { error: 'slow_down', interval: 100_000 },
      expired: { error: 'expired_token' },
      denied: { error: 'access_denied' },
    };
    let next = 'pending';
    const { relay } = relayClient(() => Response.json(answers[next]));
    const outcomes = [];
    for (const k of Object.keys(answers)) {
      next = k;
      outcomes.push(await relay.pollDeviceToken('dc'));
    }
    expect(outcomes).toEqual([
      { kind: 'authorization_pending' },
      { kind: 'slow_down', intervalSeconds: 10 },
      { kind: 'slow_down', intervalSeconds: 60 },
      { kind: 'expired_token' },
      { kind: 'access_denied' },
    ]);
  });

  it('Google: verification_url read as verification_uri; 428 pending and 403 slow_down map by their error', async () => {
    let poll = 0;
    const { relay } = relayClient((path) => {
      if (path.endsWith('/code')) {
        return Response.json({
          device_code: 'dc',
          user_code: 'GQVQ-JKEC',
          verification_url: 'https://www.google.example/device',
          expires_in: 1800,
          interval: 5,
        });
      }
      poll++;
      return poll === 1
        ? Response.json({ error: 'authorization_pending' }, { status: 428 })
        : Response.json({ error: 'slow_down' }, { status: 403 });
    });
    expect(await relay.startDeviceAuthorization('openid')).toMatchObject({
      verificationUri: 'https://www.google.example/device',
    });
    expect(await relay.pollDeviceToken('dc')).toEqual({ kind: 'authorization_pending' });
    expect(await relay.pollDeviceToken('dc')).toEqual({ kind: 'slow_down' });
  });

  it('token_type in any case is a bearer token', async () => {
    const { relay } = relayClient(() => Response.json({ access_token: 'at', token_type: 'BEARER' }));
    expect(await relay.pollDeviceToken('dc')).toMatchObject({
      kind: 'token',
      token: { token_type: 'Bearer' },
    });
  });

  it('still strict: a 200 that is neither JSON nor a form is no token, and a redirect is not followed', async () => {
    let answer = new Response('<html>sign in</html>', { headers: { 'content-type': 'text/html' } });
    const { relay, seen } = relayClient(() => answer);
    expect(await relay.pollDeviceToken('dc')).toMatchObject({ kind: 'error', code: 'server_error' });
    answer = new Response(null, { status: 302, headers: { location: 'https://elsewhere.example/token' } });
    expect(await relay.pollDeviceToken('dc')).toEqual({ kind: 'unreachable' });
    expect(seen.every((s) => !s.url.includes('elsewhere'))).toBe(true);
  });
});

/** Refresh-token custody (src/service/grants.ts) against the in-memory store. */
import { describe, expect, it } from 'vitest';
import { deriveKeys } from '../../src/core/crypto.ts';
import type { BridgeFlow } from '../../src/core/flow.ts';
import { UnavailableError } from '../../src/core/errors.ts';
import { createLogger } from '../../src/observability/log.ts';
import { GrantStore } from '../../src/service/grants.ts';
import type { RefreshingUpstream } from '../../src/upstream/types.ts';
import { flowCodec } from '../../src/store/codec.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { FakeClock } from '../helpers/clock.ts';

const keys = deriveKeys('g'.repeat(32));
const JWK = { kty: 'OKP', crv: 'X25519', x: 'pub' } as const;

function setup(ttlSeconds = 3600) {
  const clock = new FakeClock();
  const store = new MemoryStore({ codec: flowCodec(keys), clock });
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
  const revoked: string[] = [];
  let revokeFails = false;
  const upstream: RefreshingUpstream = {
    refresh: async () => {
      throw new Error('not used');
    },
    revoke: async (refreshToken) => {
      if (revokeFails) throw new UnavailableError('upstream', 'down');
      revoked.push(refreshToken);
      return true;
    },
  };
  const grants = new GrantStore({ store, keys, ttlSeconds, upstream, log });
  return { clock, store, grants, lines, revoked, failRevocations: () => (revokeFails = true) };
}

function flow(over: Partial<BridgeFlow> = {}): BridgeFlow {
  return {
    deviceId: 'tv-1',
    rid: 'r1',
    mode: 'authorization_code',
    state: 'pending',
    scope: 'openid offline_access',
    createdAt: 0,
    expiresAt: 600_000,
    interval: 5,
    secrets: { userCode: 'BCDF-GHJK' },
    ...over,
  };
}

const TOKEN = { access_token: 'at', token_type: 'Bearer', refresh_token: 'rt-1' };

describe('grant store', () => {
  it('keeps the refresh token of a token event and hands the event on without it', async () => {
    const { grants } = setup();
    const kept = await grants.keep(flow({ jwk: JWK }), { type: 'token', token: TOKEN });
    expect(kept).toEqual({
      event: { type: 'token', token: { access_token: 'at', token_type: 'Bearer' }, refreshable: true },
    });
    expect(await grants.take('tv-1')).toEqual({
      refreshToken: 'rt-1',
      scope: 'openid offline_access',
      jwk: JWK,
    });
  });

  it('does the same for a relay poll that returned a token, with the token’s scope', async () => {
    const { grants } = setup();
    const token = { ...TOKEN, scope: 'openid' };
    const kept = await grants.keep(flow(), { type: 'poll', outcome: { kind: 'token', token } });
    expect(kept.event).toEqual({
      type: 'poll',
      outcome: {
        kind: 'token',
        token: { access_token: 'at', token_type: 'Bearer', scope: 'openid' },
        refreshable: true,
      },
    });
    expect(await grants.take('tv-1')).toEqual({ refreshToken: 'rt-1', scope: 'openid' });
  });

  it('is take-once until put back', async () => {
    const { grants } = setup();
    await grants.keep(flow(), { type: 'token', token: TOKEN });
    const grant = await grants.take('tv-1');
    expect(grant).toBeDefined();
    expect(await grants.take('tv-1')).toBeUndefined();
    await grants.putBack('tv-1', grant!, 'rt-2');
    expect(await grants.take('tv-1')).toMatchObject({ refreshToken: 'rt-2', rotated: true });
  });

  it('a new authorization replaces the grant, with a new refresh token or without one, and says which it replaced', async () => {
    const { grants, lines } = setup();
    await grants.keep(flow(), { type: 'token', token: TOKEN });
    const second = await grants.keep(flow({ rid: 'r2' }), {
      type: 'token',
      token: { ...TOKEN, refresh_token: 'rt-2' },
    });
    expect(second.replaced).toBe('rt-1');
    const third = await grants.keep(flow({ rid: 'r3' }), {
      type: 'token',
      token: { access_token: 'at-3', token_type: 'Bearer' },
    });
    expect(third).toEqual({
      event: { type: 'token', token: { access_token: 'at-3', token_type: 'Bearer' } },
      replaced: 'rt-2',
    });
    expect(await grants.take('tv-1')).toBeUndefined();
    const audit = lines.filter((l) => l.event === 'grant.revoked');
    expect(audit).toEqual([
      expect.objectContaining({ reason: 'replaced', deviceId: 'tv-1' }),
      expect.objectContaining({ reason: 'replaced', deviceId: 'tv-1' }),
    ]);
    expect(JSON.stringify(lines)).not.toMatch(/rt-1|rt-2/);
  });

  it('revoke asks the upstream, and a failure is logged, never thrown', async () => {
    const { grants, revoked, failRevocations, lines } = setup();
    await grants.revoke('tv-1', 'rt-1');
    expect(revoked).toEqual(['rt-1']);
    failRevocations();
    await expect(grants.revoke('tv-1', 'rt-2')).resolves.toBeUndefined();
    expect(lines.some((l) => l.level === 40 && /could not be revoked/.test(String(l.msg)))).toBe(true);
  });

  it('keeps nothing for a finished flow, with a TTL of 0, or for an event without a refresh token', async () => {
    const finished = setup();
    const e = await finished.grants.keep(flow({ state: 'denied' }), { type: 'token', token: TOKEN });
    expect(e).toEqual({ event: { type: 'token', token: { access_token: 'at', token_type: 'Bearer' } } });
    expect(await finished.grants.take('tv-1')).toBeUndefined();

    const off = setup(0);
    await off.grants.keep(flow(), { type: 'token', token: TOKEN });
    expect(await off.grants.take('tv-1')).toBeUndefined();

    const plain = { type: 'token', token: { access_token: 'at', token_type: 'Bearer' } } as const;
    expect(await off.grants.keep(flow(), plain)).toEqual({ event: plain });
  });

  it('refuses a stored grant that is not a grant', async () => {
    const { store, grants } = setup();
    const key = keys.lookupHash('grant', 'tv-1');
    await store.putOnce(
      key,
      keys.seal(JSON.stringify({ refreshToken: 42, scope: 'x' }), 'grant/tv-1'),
      60_000,
    );
    await expect(grants.take('tv-1')).rejects.toThrow(/malformed/);
  });

  it('refuses a grant sealed for another device', async () => {
    const { grants, store } = setup();
    await grants.keep(flow({ deviceId: 'tv-2' }), { type: 'token', token: TOKEN });
    const sealed = await store.takeOnce(keys.lookupHash('grant', 'tv-2'));
    await store.putOnce(keys.lookupHash('grant', 'tv-1'), sealed!, 60_000);
    await expect(grants.take('tv-1')).rejects.toThrow();
  });
});

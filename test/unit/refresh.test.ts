/**
 * `req/refresh` through the flow service's request handler, on the memory store: which refusals drop the device's
 * grant (only the upstream's word that it is dead) and which keep it for the next refresh.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { deriveKeys } from '../../src/core/crypto.ts';
import { OAuthError } from '../../src/core/errors.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { createFlowService } from '../../src/service/flows.ts';
import { GrantStore } from '../../src/service/grants.ts';
import { RelayStarter } from '../../src/service/start-relay.ts';
import { flowCodec } from '../../src/store/codec.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { RelayUpstream } from '../../src/upstream/types.ts';
import { FakeClock } from '../helpers/clock.ts';

const SECRET = 'r'.repeat(32);

function setup(refresh: RelayUpstream['refresh']) {
  const config = loadConfig({
    DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
    DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    DEVICEGATE_SECRET: SECRET,
  });
  const clock = new FakeClock();
  const keys = deriveKeys(SECRET);
  const store = new MemoryStore({ codec: flowCodec(keys), clock });
  const log = createLogger('silent');
  const upstream: RelayUpstream = {
    kind: 'device',
    refresh,
    revoke: async () => true,
    startDeviceAuthorization: async () => {
      throw new Error('not used');
    },
    pollDeviceToken: async () => ({ kind: 'authorization_pending' }),
  };
  const replies: DeviceReply[] = [];
  const service = createFlowService({
    config,
    publicUrl: 'https://gw.example',
    clock,
    store,
    upstream,
    starter: new RelayStarter({
      store,
      upstream,
      clock,
      codeTtlSeconds: 600,
      maxFlowsPerDevice: 3,
      leaseMs: 10_000,
    }),
    keys,
    log,
    metrics: new Metrics(),
    channel: { publish: async (_id, reply) => void replies.push(reply) },
  });
  const grants = new GrantStore({ store, keys, ttlSeconds: 3600, upstream, log });
  const ask = (rid: string) =>
    service.handleRequest({
      deviceId: 'tv-1',
      action: 'refresh',
      rawAction: 'refresh',
      payload: Buffer.from(JSON.stringify({ rid })),
    });
  return { grants, replies, ask };
}

describe('req/refresh', () => {
  it('a refusal of the gateway itself (invalid_client) keeps the grant: the next refresh works', async () => {
    let calls = 0;
    const { grants, replies, ask } = setup(async () => {
      calls += 1;
      if (calls === 1) throw new OAuthError('unauthorized_client', 'the gateway is not accepted');
      return { access_token: 'at-2', token_type: 'Bearer' };
    });
    await grants.putBack('tv-1', { refreshToken: 'rt-1', scope: 'openid offline_access' });
    await ask('q1');
    await ask('q2');
    expect(replies).toEqual([
      expect.objectContaining({ rid: 'q1', status: 'error', error: 'unauthorized_client' }),
      expect.objectContaining({ rid: 'q2', status: 'authorized', access_token: 'at-2' }),
    ]);
  });

  it('the upstream saying the grant is dead (invalid_grant → expired_token) drops it', async () => {
    const { grants, replies, ask } = setup(async () => {
      throw new OAuthError('expired_token', 'the authorization expired or was revoked; authorize again');
    });
    await grants.putBack('tv-1', { refreshToken: 'rt-1', scope: 'openid offline_access' });
    await ask('q1');
    await ask('q2');
    expect(replies).toEqual([
      expect.objectContaining({ rid: 'q1', status: 'error', error: 'expired_token' }),
      expect.objectContaining({
        rid: 'q2',
        status: 'error',
        error: 'expired_token',
        error_description: 'no authorization is kept for this device; start a new one',
      }),
    ]);
  });
});

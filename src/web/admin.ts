/**
 * The operations port (`DEVICEGATE_ADMIN_PORT`): `/healthz`, `/readyz`, `/metrics`, and — only with
 * `DEVICEGATE_ADMIN_TOKEN` — the admin API behind `Authorization: Bearer <token>` (compared in constant time):
 *
 *   POST /admin/devices/{id}/revoke    → 200 {"deviceId","revoked":true,"changed"}
 *   POST /admin/devices/{id}/restore   → 200 {"deviceId","revoked":false,"changed"}
 *   GET  /admin/devices/revoked        → 200 {"devices":[...]}
 *
 * Without a token no admin route exists (404), so a forgotten token never means an open API. A missing or wrong token
 * is 401, a device id outside the contract's pattern 400, the store unreachable 503.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { secretMatches } from '../core/crypto.ts';
import { UnavailableError } from '../core/errors.ts';
import { ID_PATTERN } from '../core/protocol.ts';
import type { RevokedDevices } from '../service/revocations.ts';
import { type AppDeps, healthRoute, newFastify, operationsRoutes } from './app.ts';

export interface AdminAppDeps extends Pick<AppDeps, 'metrics' | 'readiness'> {
  log: Logger;
  /** the admin API's bearer token; undefined: no admin API */
  token: string | undefined;
  revocations: RevokedDevices;
}

/** Builds the operations app; the gateway listens on it. */
export function buildAdminApp(deps: AdminAppDeps): FastifyInstance {
  const app = newFastify(deps.log.child({ port: 'admin' }));
  healthRoute(app);
  operationsRoutes(app, deps);
  const token = deps.token;
  if (token !== undefined) {
    void app.register(async (api) => adminRoutes(api, token, deps.revocations), { prefix: '/admin' });
  }
  return app;
}

function adminRoutes(api: FastifyInstance, token: string, revocations: AdminAppDeps['revocations']): void {
  api.addHook('onRequest', async (req, reply) => {
    if (!bearerMatches(req, token)) {
      // answering from the hook ends the request here (fastify: send, then return the reply)
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized' });
    }
  });
  api.setErrorHandler(async (err, _req, reply) => {
    if (err instanceof UnavailableError) return reply.code(503).send({ error: 'store unavailable' });
    api.log.error({ err }, 'admin API request failed');
    return reply.code(500).send({ error: 'internal error' });
  });

  for (const [action, revoked] of [
    ['revoke', true],
    ['restore', false],
  ] as const) {
    api.post<{ Params: { id: string } }>(`/devices/:id/${action}`, async (req, reply) => {
      const deviceId = req.params.id;
      if (!ID_PATTERN.test(deviceId)) {
        return reply.code(400).send({ error: 'the device id must match ^[A-Za-z0-9._-]{1,64}$' });
      }
      const changed = await (revoked ? revocations.revoke(deviceId) : revocations.restore(deviceId));
      return { deviceId, revoked, changed };
    });
  }
  api.get('/devices/revoked', async () => ({ devices: await revocations.list() }));
}

/** `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive). */
export function bearerMatches(req: Pick<FastifyRequest, 'headers'>, token: string): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
  return match?.[1] !== undefined && secretMatches(match[1], token);
}

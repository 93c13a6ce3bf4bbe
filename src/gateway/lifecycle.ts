/**
 * Starting and closing the parts (docs/architecture.md, "Lifecycle"): the store first (Redis' eviction policy and the
 * shared clock), then the upstream's discovery (awaited only for the demo, whose identity provider runs in this
 * process; a real upstream may come up later and `/readyz` says so), then the transport (devices can send requests),
 * the scheduler (polls and deliveries), and last the HTTP listener. Every part that started is registered with the
 * closers, so a failed start and `close()` both close exactly what was started, newest first.
 */
import type { FastifyInstance } from 'fastify';
import type { Addresses } from './index.ts';
import type { Closers } from './closers.ts';
import type { Parts } from './parts.ts';
import { displayHost } from './transport.ts';
import { publicUrlOf } from './wiring.ts';
import { MQTT_WEBSOCKET_PATH } from '../web/mqtt-websocket.ts';

export async function startParts(p: Parts, closers: Closers, awaitUpstream: boolean): Promise<Addresses> {
  const { config, upstream, built, service, scheduler, app } = p;
  try {
    // first: the Redis checks and the shared clock, before any part reads the time or takes a request
    await p.opened.start();
    closers.push('upstream', async () => upstream.close());
    upstream.start();
    if (awaitUpstream) await upstream.ready();
    await built.transport.start(service.handleRequest);
    closers.push('transport', () => built.transport.close());
    await p.enforcer.start();
    closers.push('revocations', () => p.enforcer.close());
    scheduler.start();
    closers.push('scheduler', () => scheduler.close());
    closers.push('http', () => app.close());
    await app.listen({ host: config.http.host, port: config.http.port });
    const port = boundPort(app);
    const httpUrl = `http://${displayHost(config.http.host)}:${port}`;
    const tlsUrl = built.tlsUrl?.();
    const addresses: Addresses = {
      httpUrl,
      publicUrl: publicUrlOf(config, port),
      mqttUrl: built.url(),
      ...(tlsUrl !== undefined && { mqttTlsUrl: tlsUrl }),
      ...(built.websocket !== undefined && {
        mqttWsUrl: `${httpUrl.replace(/^http/, 'ws')}${MQTT_WEBSOCKET_PATH}`,
      }),
      ...(await listenAdmin(p, closers)),
    };
    p.log.info({ ...addresses, upstream: p.upstreamIssuer, mode: config.mode }, 'devicegate is running');
    return addresses;
  } catch (err) {
    await closers.closeAll();
    throw err;
  }
}

/** The operations port, when configured: `{ adminUrl }` with its bound port. */
async function listenAdmin(p: Parts, closers: Closers): Promise<Pick<Addresses, 'adminUrl'>> {
  const { adminApp } = p;
  const admin = p.config.admin;
  if (adminApp === undefined || admin === undefined) return {};
  closers.push('admin http', () => adminApp.close());
  await adminApp.listen({ host: admin.host, port: admin.port });
  return { adminUrl: `http://${displayHost(admin.host)}:${boundPort(adminApp)}` };
}

function boundPort(app: FastifyInstance): number {
  const address = app.server.address();
  if (typeof address === 'object' && address !== null) return address.port;
  throw new Error('the HTTP server has no TCP address');
}

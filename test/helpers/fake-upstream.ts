/**
 * A fake RFC 8628 authorization server on loopback http for integration tests that need an upstream but no person:
 * discovery, a device authorization endpoint handing out numbered codes (`dc-1`, `dc-2`, ...), and a token endpoint
 * that answers `authorization_pending` and records when each poll arrived — or, given `token`, issues it at the first
 * poll, and then also has a revocation endpoint (RFC 7009) that records what was revoked.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeUpstream {
  readonly url: string;
  /** every token request, in arrival order */
  readonly polls: Array<{ at: number; deviceCode: string }>;
  /** the `token` of every revocation request, in arrival order */
  readonly revoked: string[];
  close(): Promise<void>;
}

export async function startFakeUpstream(o: {
  intervalSeconds: number;
  /** a token response (RFC 6749 §5.1) to answer every poll with */
  token?: Record<string, unknown>;
}): Promise<FakeUpstream> {
  const polls: FakeUpstream['polls'] = [];
  const revoked: string[] = [];
  let codes = 0;
  let url = '';
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = new URLSearchParams(Buffer.concat(chunks).toString());
      const send = (status: number, json: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(json));
      };
      switch (req.url) {
        case '/.well-known/openid-configuration':
          return send(200, {
            issuer: url,
            device_authorization_endpoint: `${url}/device`,
            token_endpoint: `${url}/token`,
            ...(o.token !== undefined && { revocation_endpoint: `${url}/revoke` }),
          });
        case '/device':
          codes++;
          return send(200, {
            device_code: `dc-${codes}`,
            user_code: `BCDF-GH${codes}`,
            verification_uri: `${url}/activate`,
            expires_in: 600,
            interval: o.intervalSeconds,
          });
        case '/token':
          polls.push({ at: Date.now(), deviceCode: body.get('device_code') ?? '' });
          if (o.token !== undefined) return send(200, o.token);
          return send(400, { error: 'authorization_pending' });
        case '/revoke':
          revoked.push(body.get('token') ?? '');
          return send(200, {});
        default:
          return send(404, { error: 'not_found' });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    polls,
    revoked,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

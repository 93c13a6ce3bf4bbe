/** What the upstream and the store say about a device's kept refresh token, for the grant and revocation tests. */
import { deriveKeys } from '../../src/core/crypto.ts';
import type { DemoIdp } from '../../src/demo/idp.ts';
import type { FlowStore } from '../../src/store/types.ts';

/**
 * Reads the refresh token the gateway keeps for a device (and keeps it there): what a thief of the store would see.
 * Throws when no grant is kept.
 */
export async function keptRefreshToken(store: FlowStore, secret: string, deviceId: string): Promise<string> {
  const keys = deriveKeys(secret);
  const hash = keys.lookupHash('grant', deviceId);
  const sealed = await store.takeOnce(hash);
  if (sealed === undefined) throw new Error(`no grant kept for ${deviceId}`);
  await store.putOnce(hash, sealed, 60_000);
  return (JSON.parse(keys.open(sealed, `grant/${deviceId}`)) as { refreshToken: string }).refreshToken;
}

/** RFC 7662 at the demo IdP, as its client. */
export async function introspect(upstream: DemoIdp, token: string): Promise<{ active: boolean }> {
  const res = await fetch(`${upstream.issuer}/token/introspection`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${btoa(`${upstream.clientId}:${upstream.clientSecret}`)}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token }).toString(),
  });
  return (await res.json()) as { active: boolean };
}

/**
 * Who the demo identity provider knows: its one user (`demo` / `demo`), its one client, and the scopes that client
 * may ask for. Shared by the provider configuration (`provider-config.ts`) and the sign-in pages (`interactions.ts`).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Account } from 'oidc-provider';

export const DEMO_USERNAME = 'demo';
export const DEMO_PASSWORD = 'demo';
export const DEMO_CLIENT_ID = 'devicegate-demo';
/** The client name shown on the sign-in, consent and confirm pages. */
export const DEMO_CLIENT_NAME = 'devicegate (demo)';
/** Scopes the demo client may ask for. */
export const DEMO_SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;

/** The demo user's account, as the provider's `findAccount` returns it. */
export const demoAccount: Account = {
  accountId: DEMO_USERNAME,
  claims: () => ({
    sub: DEMO_USERNAME,
    name: 'Demo User',
    preferred_username: DEMO_USERNAME,
    email: 'demo@example.com',
    email_verified: true,
  }),
};

/** True when `username` / `password` are the demo user's, compared in constant time. */
export function isDemoUser(username: string, password: string): boolean {
  return sameSecret(username, DEMO_USERNAME) && sameSecret(password, DEMO_PASSWORD);
}

/** Constant-time comparison (of digests, so lengths do not leak either). */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

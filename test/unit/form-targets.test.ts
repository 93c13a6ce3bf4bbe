/**
 * Where the pages' forms may lead (CSP `form-action`, src/web/plugins/security-headers.ts): the issuer's origin from
 * the start, the authorize endpoint's as soon as the upstream's metadata names it — before any approval, so a
 * provider whose sign-in page is on another host (AWS Cognito's hosted UI) is not blocked on the first Approve.
 */
import { describe, expect, it } from 'vitest';
import { FormTargets } from '../../src/web/plugins/security-headers.ts';

describe('FormTargets', () => {
  it('allows the issuer at once, and the authorize endpoint from the moment it is known', () => {
    const metadata: { authorize?: string } = {};
    const targets = new FormTargets('https://cognito-idp.example/pool', () => metadata.authorize);
    expect(targets.toString()).toBe('https://cognito-idp.example');
    metadata.authorize = 'https://pool.auth.example/oauth2/authorize';
    expect(targets.toString()).toBe('https://cognito-idp.example https://pool.auth.example');
  });

  it('learns a redirect target it is told about, and lists each origin once', () => {
    const targets = new FormTargets('https://idp.example', () => 'https://idp.example/authorize');
    targets.allow('https://login.example/start?x=1');
    targets.allow('https://login.example/other');
    expect(targets.toString()).toBe('https://idp.example https://login.example');
  });
});

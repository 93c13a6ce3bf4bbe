/**
 * The node-oidc-provider configuration of the demo identity provider: one confidential client, the demo account,
 * fresh keys per start, PKCE required, and (optionally) the RFC 8628 device flow with our own pages for entering and
 * confirming the user code.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { ClientMetadata, Configuration, KoaContextWithOIDC, ProviderError } from 'oidc-provider';
import { DEMO_CLIENT_NAME, DEMO_SCOPES, DEMO_USERNAME, demoAccount } from './account.ts';
import { memoryAdapterFactory } from './adapter.ts';
import { PAGE_HEADERS, cancelledPage, codePage, confirmPage, donePage, errorPage } from './pages.ts';

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

type DeviceFlowFeature = NonNullable<NonNullable<Configuration['features']>['deviceFlow']>;

/** What the configuration depends on (see `DemoIdpOptions` in `idp.ts` for the meaning of each field). */
export interface DemoProviderSettings {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  deviceFlow: boolean;
  /** seconds */
  ttl?: { deviceCode?: number; accessToken?: number };
  /** rotate the refresh token on every use (default: the provider's rule, no rotation for this client) */
  rotateRefreshTokens?: boolean;
}

/** A fresh configuration (new signing key, cookie key and in-memory store) for one provider instance. */
export function demoConfiguration(o: DemoProviderSettings): Configuration {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    adapter: memoryAdapterFactory(),
    clients: [demoClient(o)],
    jwks: { keys: [{ ...jwk, kty: 'EC', kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'ES256' }] },
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    // `phone` is a scope the provider knows but the demo client may not ask for (→ invalid_scope).
    scopes: ['openid', 'offline_access', 'profile', 'email', 'phone'],
    responseTypes: ['code'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      phone: ['phone_number'],
    },
    findAccount: async (_ctx, sub) => (sub === DEMO_USERNAME ? demoAccount : undefined),
    clientBasedCORS: () => false,
    pkce: { required: () => true },
    ...(o.rotateRefreshTokens === true && { rotateRefreshToken: true }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError: (ctx, out) => {
      renderPage(
        ctx,
        errorPage('Sign-in failed', [out.error, out.error_description].filter(Boolean).join(': ')),
      );
    },
    ttl: {
      AccessToken: o.ttl?.accessToken ?? 3600,
      AuthorizationCode: 60,
      BackchannelAuthenticationRequest: 600,
      ClientCredentials: 600,
      DeviceCode: o.ttl?.deviceCode ?? 600,
      Grant: 86_400,
      IdToken: 3600,
      Interaction: 900,
      PreAuthorizedCode: 600,
      RefreshToken: 86_400,
      Session: 86_400,
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: deviceFlowFeature(o.deviceFlow),
      introspection: {
        enabled: true,
        // a client may introspect only its own tokens
        allowedPolicy: async (ctx, _client, token) => token.clientId === ctx.oidc.client?.clientId,
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (ctx, _client, token) => token.clientId === ctx.oidc.client?.clientId,
      },
      userinfo: { enabled: true },
      resourceIndicators: { enabled: false },
      rpInitiatedLogout: { enabled: false },
    },
  };
}

/** The one confidential client; without redirect URIs it may use the device flow only. */
function demoClient(o: DemoProviderSettings): ClientMetadata {
  const grantTypes = ['authorization_code', 'refresh_token', ...(o.deviceFlow ? [DEVICE_CODE_GRANT] : [])];
  return {
    client_id: o.clientId,
    client_secret: o.clientSecret,
    client_name: DEMO_CLIENT_NAME,
    grant_types:
      o.redirectUris.length === 0 ? grantTypes.filter((g) => g !== 'authorization_code') : grantTypes,
    response_types: o.redirectUris.length === 0 ? [] : ['code'],
    redirect_uris: o.redirectUris,
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
    scope: DEMO_SCOPES.join(' '),
  };
}

/** RFC 8628 device flow, with our own pages for entering the code, confirming it, and the end. */
function deviceFlowFeature(enabled: boolean): DeviceFlowFeature {
  return {
    enabled,
    charset: 'base-20',
    mask: '****-****',
    userCodeInputSource: (ctx, form, _out, err) => {
      renderPage(ctx, err?.name === 'AbortedError' ? cancelledPage() : codePage(codeMessage(form, err)));
    },
    userCodeConfirmSource: (ctx, form, client, _deviceInfo, userCode) => {
      renderPage(ctx, confirmPage({ form, clientName: client.clientName ?? client.clientId, userCode }));
    },
    successSource: (ctx) => {
      renderPage(ctx, donePage(ctx.oidc.client?.clientName));
    },
  };
}

function codeMessage(form: string, err: ProviderError | undefined): Parameters<typeof codePage>[0] {
  if (err === undefined) return { form };
  // One message for unknown, expired and used codes (RFC 8628 §5.1: give a guesser nothing to learn).
  const codeProblem =
    err.userCode !== undefined || /^(NoCode|NotFound|Expired|AlreadyUsed)Error$/.test(err.name);
  return {
    form,
    error: true,
    message: codeProblem
      ? 'That code does not work: it may be mistyped, expired or already used. Check your device and try again.'
      : 'Something went wrong. Try again.',
  };
}

/** Answers with one of our HTML pages, with the same headers as the pages `interactions.ts` serves. */
function renderPage(ctx: KoaContextWithOIDC, html: string): void {
  ctx.type = 'html';
  for (const [name, value] of Object.entries(PAGE_HEADERS)) if (name !== 'content-type') ctx.set(name, value);
  ctx.body = html;
}

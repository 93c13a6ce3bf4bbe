/**
 * A minimal local declaration of the parts of oidc-provider 9 (which ships no types) that devicegate uses: the demo
 * identity provider in src/demo. Shapes follow oidc-provider's lib/provider.js, lib/models and
 * lib/helpers/defaults.js; members not listed here are not used.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export type UnknownObject = Record<string, unknown>;

  /** What a storage adapter keeps for one model instance. */
  export interface AdapterPayload {
    readonly [key: string]: unknown;
    jti?: string;
    grantId?: string;
    userCode?: string;
    uid?: string;
    consumed?: number;
  }

  /** One adapter per model name (`AccessToken`, `DeviceCode`, `Session`, ...). */
  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn: number | undefined): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  export type AdapterFactory = (model: string) => Adapter;

  export interface ClientMetadata {
    client_id: string;
    client_secret?: string;
    client_name?: string;
    grant_types?: string[];
    response_types?: string[];
    redirect_uris?: string[];
    token_endpoint_auth_method?: string;
    id_token_signed_response_alg?: string;
    scope?: string;
  }

  /** The client as the provider sees it (a model instance; camelCase properties). */
  export interface Client {
    readonly clientId: string;
    readonly clientName?: string;
    readonly clientAuthMethod: string;
  }

  export interface Account {
    accountId: string;
    claims(
      use: string,
      scope: string,
      claims: UnknownObject,
      rejected: string[],
    ): Promise<UnknownObject> | UnknownObject;
  }

  export interface OIDCContext {
    readonly route: string;
    readonly client?: Client;
    readonly params?: Readonly<Record<string, unknown>>;
  }

  /** The Koa context oidc-provider hands to helper functions (only what devicegate touches). */
  export interface KoaContextWithOIDC {
    readonly oidc: OIDCContext;
    readonly method: string;
    readonly path: string;
    body: unknown;
    status: number;
    type: string;
    set(field: string, value: string): void;
  }

  /** Errors oidc-provider renders (`userCodeInputSource` `err`, `renderError` `error`). */
  export interface ProviderError extends Error {
    readonly error?: string;
    readonly error_description?: string;
    readonly userCode?: string;
    readonly status?: number;
  }

  export type TTLFunction = (
    ctx: KoaContextWithOIDC | undefined,
    token: unknown,
    client: Client | undefined,
  ) => number;

  export interface JWK {
    kty: string;
    kid?: string;
    use?: string;
    alg?: string;
    [member: string]: unknown;
  }

  export interface Configuration {
    adapter?: AdapterFactory;
    clients?: ClientMetadata[];
    jwks?: { keys: JWK[] };
    cookies?: {
      keys?: string[];
      long?: { httpOnly?: boolean; sameSite?: 'lax' | 'strict' | 'none' };
      short?: { httpOnly?: boolean; sameSite?: 'lax' | 'strict' | 'none' };
    };
    claims?: Record<string, string[] | null>;
    scopes?: string[];
    responseTypes?: string[];
    findAccount?: (ctx: KoaContextWithOIDC, sub: string, token?: unknown) => Promise<Account | undefined>;
    clientBasedCORS?: (ctx: KoaContextWithOIDC, origin: string, client: Client) => boolean;
    pkce?: { required?: (ctx: KoaContextWithOIDC, client: Client) => boolean };
    interactions?: {
      url?: (ctx: KoaContextWithOIDC, interaction: { uid: string }) => Promise<string> | string;
    };
    renderError?: (
      ctx: KoaContextWithOIDC,
      out: Record<string, string>,
      error: ProviderError,
    ) => Promise<void> | void;
    ttl?: Partial<
      Record<
        | 'AccessToken'
        | 'AuthorizationCode'
        | 'ClientCredentials'
        | 'DeviceCode'
        | 'BackchannelAuthenticationRequest'
        | 'PreAuthorizedCode'
        | 'Grant'
        | 'IdToken'
        | 'Interaction'
        | 'RefreshToken'
        | 'Session',
        number | TTLFunction
      >
    >;
    features?: {
      devInteractions?: { enabled: boolean };
      deviceFlow?: {
        enabled: boolean;
        charset?: 'base-20' | 'digits';
        mask?: string;
        userCodeInputSource?: (
          ctx: KoaContextWithOIDC,
          form: string,
          out: Record<string, string> | undefined,
          err: ProviderError | undefined,
        ) => Promise<void> | void;
        userCodeConfirmSource?: (
          ctx: KoaContextWithOIDC,
          form: string,
          client: Client,
          deviceInfo: UnknownObject | undefined,
          userCode: string,
        ) => Promise<void> | void;
        successSource?: (ctx: KoaContextWithOIDC) => Promise<void> | void;
      };
      introspection?: {
        enabled: boolean;
        allowedPolicy?: (
          ctx: KoaContextWithOIDC,
          client: Client,
          token: { clientId?: string },
        ) => Promise<boolean>;
      };
      revocation?: {
        enabled: boolean;
        allowedPolicy?: (
          ctx: KoaContextWithOIDC,
          client: Client,
          token: { clientId?: string },
        ) => Promise<boolean>;
      };
      userinfo?: { enabled: boolean };
      resourceIndicators?: { enabled: boolean };
      rpInitiatedLogout?: { enabled: boolean };
    };
  }

  export interface InteractionDetails {
    readonly uid: string;
    readonly prompt: {
      readonly name: 'login' | 'consent' | (string & {});
      readonly reasons: string[];
      readonly details: {
        readonly missingOIDCScope?: string[];
        readonly missingOIDCClaims?: string[];
        readonly missingResourceScopes?: Record<string, string[]>;
        readonly [key: string]: unknown;
      };
    };
    readonly params: Readonly<Record<string, unknown>> & {
      readonly client_id?: string;
      readonly scope?: string;
    };
    readonly session?: { readonly accountId: string; readonly uid?: string };
    readonly grantId?: string;
    readonly returnTo: string;
    readonly deviceCode?: string;
  }

  export interface InteractionResults {
    login?: { accountId: string; acr?: string; amr?: string[]; remember?: boolean };
    consent?: { grantId?: string };
    error?: string;
    error_description?: string;
  }

  export interface Grant {
    readonly accountId?: string;
    readonly clientId?: string;
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    /** Stores the grant; resolves with its id. */
    save(): Promise<string>;
  }

  export interface GrantConstructor {
    new (properties: { accountId: string; clientId: string }): Grant;
    find(id: string): Promise<Grant | undefined>;
  }

  export type ProviderEvent = 'grant.success' | 'grant.error' | 'server_error' | 'error';

  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    readonly Grant: GrantConstructor;
    /** Koa's request listener for node:http. */
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: InteractionResults,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    urlFor(name: string, options?: UnknownObject): string;
    on(event: 'grant.success', listener: (ctx: KoaContextWithOIDC) => void): this;
    on(
      event: 'grant.error' | 'server_error',
      listener: (ctx: KoaContextWithOIDC, error: Error) => void,
    ): this;
    on(event: 'error', listener: (error: Error, ctx?: KoaContextWithOIDC) => void): this;
  }

  export const errors: Readonly<Record<string, new (description?: string) => ProviderError>>;

  export default Provider;
}

/**
 * The pages' response headers (docs/security.md, "web page"): no script (CSP `default-src 'none'`), no framing
 * (`frame-ancestors 'none'` + `X-Frame-Options: DENY`), `Referrer-Policy: no-referrer` because URLs carry the user
 * code, HSTS on https, and `Cache-Control: no-store` on every answer, error pages included. Every answer also
 * depends on `Accept-Language` (the page's language, ../i18n/index.ts), which `Vary` says.
 */
import fastifyHelmet from '@fastify/helmet';
import { inScope } from './scope.ts';

/**
 * Where a form may lead (CSP `form-action`): this origin, and the upstream's authorize endpoint, which the Approve
 * POST redirects to (Chromium applies form-action to the redirects that follow a form submission, and blocks the
 * navigation otherwise). The issuer's origin is known up front, and so is the authorize endpoint's as soon as the
 * upstream's metadata is (discovered or configured) — it may be on another host (AWS Cognito's hosted UI); any other
 * redirect target BridgeFlows hands out is learned when it does ({@link FormTargets.allow}).
 */
export class FormTargets {
  readonly #origins = new Set<string>();

  readonly #authorizeEndpoint: () => string | undefined;

  /** `authorizeEndpoint`: the upstream's authorize endpoint once known, read for every page. */
  constructor(issuer: string, authorizeEndpoint: () => string | undefined) {
    this.#origins.add(new URL(issuer).origin);
    this.#authorizeEndpoint = authorizeEndpoint;
  }

  /** Lets forms lead to `url`'s origin from now on. */
  allow(url: string): void {
    this.#origins.add(new URL(url).origin);
  }

  /** The targets besides `'self'`, as a CSP source list. */
  toString(): string {
    const endpoint = this.#authorizeEndpoint();
    if (endpoint !== undefined && URL.canParse(endpoint)) this.#origins.add(new URL(endpoint).origin);
    return [...this.#origins].join(' ');
  }
}

export interface SecurityHeadersOptions {
  /** where forms may lead besides this origin; none when absent (pages without forms) */
  formTargets?: FormTargets;
  /** the public URL is https: send HSTS */
  secure: boolean;
}

export const securityHeaders = inScope<SecurityHeadersOptions>(
  'devicegate-security-headers',
  async (scope, o) => {
    await scope.register(fastifyHelmet, {
      global: true,
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'"],
          formAction: o.formTargets === undefined ? ["'self'"] : ["'self'", () => String(o.formTargets)],
          frameAncestors: ["'none'"],
          baseUri: ["'none'"],
        },
      },
      frameguard: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
      strictTransportSecurity: o.secure ? { maxAge: 31_536_000 } : false,
      crossOriginOpenerPolicy: { policy: 'same-origin' },
      crossOriginResourcePolicy: { policy: 'same-origin' },
    });
    scope.addHook('onRequest', async (_req, reply) => {
      reply.header('cache-control', 'no-store').header('vary', 'accept-language');
    });
  },
);

/**
 * The pages' response headers (docs/security.md, "web page"): no script (CSP `default-src 'none'`), no framing
 * (`frame-ancestors 'none'` + `X-Frame-Options: DENY`), `Referrer-Policy: no-referrer` because URLs carry the user
 * code, HSTS on https, and `Cache-Control: no-store` on every answer, error pages included.
 */
import fastifyHelmet from '@fastify/helmet';
import { inScope } from './scope.ts';

/**
 * Where a form may lead (CSP `form-action`): this origin, and the upstream's authorize endpoint, which the Approve
 * POST redirects to (Chromium applies form-action to the redirects that follow a form submission, and blocks the
 * navigation otherwise). The issuer's origin is known up front; an authorize endpoint on another origin is learned
 * from the first redirect BridgeFlows hands out ({@link FormTargets.allow}).
 */
export class FormTargets {
  readonly #origins = new Set<string>();

  constructor(issuer: string) {
    this.#origins.add(new URL(issuer).origin);
  }

  /** Lets forms lead to `url`'s origin from now on. */
  allow(url: string): void {
    this.#origins.add(new URL(url).origin);
  }

  /** The targets besides `'self'`, as a CSP source list. */
  toString(): string {
    return [...this.#origins].join(' ');
  }
}

export interface SecurityHeadersOptions {
  formTargets: FormTargets;
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
          formAction: ["'self'", () => o.formTargets.toString()],
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
      reply.header('cache-control', 'no-store');
    });
  },
);

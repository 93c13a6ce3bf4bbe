/** Signed cookies for the pages (the browser session of ./csrf.ts), keyed with the deployment's cookie secret. */
import fastifyCookie from '@fastify/cookie';
import { inScope } from './scope.ts';

export const cookies = inScope<{ secret: Buffer | string }>('devicegate-cookies', async (scope, o) => {
  await scope.register(fastifyCookie, { secret: o.secret });
});

/**
 * A page cookie's name: `__Host-` prefixed when the public URL is https, so the browser accepts it only from this
 * origin over TLS with `Secure`, `Path=/` and no `Domain` — a sibling subdomain or a network attacker on plain http
 * cannot plant it (RFC 6265bis §4.1.3.2). Plain on http, where browsers refuse the prefix.
 */
export function pageCookieName(name: string, secure: boolean): string {
  return secure ? `__Host-${name}` : name;
}

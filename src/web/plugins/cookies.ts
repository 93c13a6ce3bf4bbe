/** Signed cookies for the pages (the CSRF session and the OAuth `state`), keyed with the deployment's cookie secret. */
import fastifyCookie from '@fastify/cookie';
import { inScope } from './scope.ts';

export const cookies = inScope<{ secret: Buffer | string }>('devicegate-cookies', async (scope, o) => {
  await scope.register(fastifyCookie, { secret: o.secret });
});

/**
 * A per-instance flood guard (@fastify/rate-limit, in memory): at most `requestsPerMinute` requests per client
 * address (IPv6: per /64) on each route that opts in with {@link floodLimited}, answered with the 429 page. It is not
 * the guessing limit: failed code entries are counted by the CodeEntryGuard, shared through the store. Kept off Redis
 * so a Redis outage is a clean 503, not a 500.
 */
import fastifyRateLimit, { normalizeIP } from '@fastify/rate-limit';
import { tooMany } from '../errors.ts';
import { inScope } from './scope.ts';

const WINDOW_MS = 60_000;
const NO_HEADER = false;

export const floodGuard = inScope<{ requestsPerMinute: number }>(
  'devicegate-flood-guard',
  async (scope, o) => {
    await scope.register(fastifyRateLimit, {
      global: false,
      max: o.requestsPerMinute,
      timeWindow: WINDOW_MS,
      keyGenerator: (req) => normalizeIP(req.ip),
      addHeadersOnExceeding: {
        'x-ratelimit-limit': NO_HEADER,
        'x-ratelimit-remaining': NO_HEADER,
        'x-ratelimit-reset': NO_HEADER,
      },
      addHeaders: {
        'x-ratelimit-limit': NO_HEADER,
        'x-ratelimit-remaining': NO_HEADER,
        'x-ratelimit-reset': NO_HEADER,
        'retry-after': true,
      },
      errorResponseBuilder: (_req, ctx) => tooMany(ctx.ttl / 1000),
    });
  },
);

/** The route option that puts a route under the flood guard. */
export function floodLimited(requestsPerMinute: number) {
  return { rateLimit: { max: requestsPerMinute, timeWindow: WINDOW_MS } };
}

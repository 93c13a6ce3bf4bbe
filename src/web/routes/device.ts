/**
 * Bridge mode's web surface (DESIGN §3): the code-entry page, the confirm step, the decision, the OAuth callback and
 * the outcome page. The flow logic is in BridgeFlows; this file does HTTP: forms, CSRF, cookies, headers, limits.
 *
 * Rules it enforces (SECURITY-CASES §0 "Web page"; RFC 8628 §5; RFC 9700):
 * - pages carry no script; CSP `default-src 'none'`, `frame-ancestors 'none'` + `X-Frame-Options: DENY` (§4.16),
 *   `Referrer-Policy: no-referrer` because URLs carry the user code (§4.2), `Cache-Control: no-store`;
 * - every POST needs the synchronizer token of the browser's session cookie, an `Origin` equal to the public URL's
 *   (when sent) and a `Sec-Fetch-Site` other than `cross-site` (OWASP CSRF); bodies are forms only, each field once;
 * - `?user_code=` only pre-fills the input: the person always submits it and then confirms (RFC 8628 §5.4);
 * - one answer (status and body) for unknown, expired, used and denied codes; failed entries are limited per client
 *   address and globally (RFC 8628 §5.1, arithmetic at {@link DEFAULT_LIMITS});
 * - every POST that changes state answers 303, never 307 (RFC 9700 §4.12);
 * - `state` travels in an HttpOnly, SameSite=Lax, path-scoped cookie and is checked by BridgeFlows.callback (§2.1.1).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import fastifyHelmet from '@fastify/helmet';
import fastifyRateLimit, { normalizeIP } from '@fastify/rate-limit';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../../config/index.ts';
import { type Clock, systemClock } from '../../core/clock.ts';
import { MAX_USER_CODE_INPUT, USER_CODE_SPACE, formatUserCode, normalizeUserCode } from '../../core/codes.ts';
import type { Keys } from '../../core/crypto.ts';
import { UnavailableError } from '../../core/errors.ts';
import type { BridgeFlows } from '../../service/bridge.ts';
import { describe } from '../../observability/log.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { GRACE_MS } from '../../store/types.ts';
import {
  type ErrorKind,
  type Frame,
  type Result,
  FAVICON_PATH,
  STYLESHEET_PATH,
  confirmPage,
  entryPage,
  errorPage,
  isResult,
  outcomePage,
} from '../views/pages.ts';
import { FAVICON_SVG, STYLESHEET } from '../views/style.ts';

// ---------------------------------------------------------------------------------------------------------------
// Brute-force limits (RFC 8628 §5.1)

/** One fixed-window limit: at most `max` failed code entries per `windowMs`. */
export interface WindowLimit {
  max: number;
  windowMs: number;
}

export interface CodeEntryLimits {
  /** failed entries per client address (IPv6: per /64) */
  perIp: WindowLimit;
  /** failed entries over all clients of the deployment (every instance, when the counter is shared) */
  global: WindowLimit;
  /** POSTs (or callbacks) per client address per minute, on each of those routes (a flood guard, @fastify/rate-limit) */
  requestsPerMinute: number;
}

/**
 * The defaults, derived from the code's entropy.
 *
 * An attacker who guesses codes at R per second for a code's lifetime T hits one of N live codes with probability
 * P ≈ R·T·N / |space| (a union bound), |space| = 20^8 = 2.56·10^10 (USER_CODE_SPACE). The global limit caps R for
 * everyone together, so it is the one that bounds P; the per-address limit keeps one client from spending the whole
 * global budget on its own (and so locking everyone else out) as long as the attacker has few addresses.
 *
 *   global 10 failures / 60 s, T = 600 s  →  R·T = 10/60 · 600 = 100 guesses per code lifetime
 *   P = 100 · N / 2.56·10^10 = 3.9·10^-9 · N
 *   N = 100 live codes  →  P = 3.9·10^-7  (< 10^-6)
 *   N = 255 live codes  →  P = 9.96·10^-7 (the largest N kept below 10^-6; see {@link maxLiveCodes})
 *   N = 10^4 live codes →  P = 3.9·10^-5  (too high: lower the global limit or the TTL, or lengthen the code)
 *
 * Fixed windows let a burst of up to 2·max straddle a window boundary, so a lifetime of T holds at most
 * max·(T/window + 1) = 110 guesses rather than 100 (P × 1.1); the table above is the long-run rate.
 *
 * Per address: 5 failures / 60 s — a person who mistypes a few times is never stopped; a single address needs two
 * windows to spend one window's global budget.
 */
export const DEFAULT_LIMITS: Readonly<CodeEntryLimits> = Object.freeze({
  perIp: Object.freeze({ max: 5, windowMs: 60_000 }),
  global: Object.freeze({ max: 10, windowMs: 60_000 }),
  requestsPerMinute: 60,
});

/**
 * P(an attacker guesses any of `liveCodes` live codes within one code lifetime) ≈ R·T·N / 20^8, where R is the
 * global failure budget per second. Capped at 1.
 */
export function guessProbability(globalPerMinute: number, ttlSeconds: number, liveCodes: number): number {
  return Math.min(1, ((globalPerMinute / 60) * ttlSeconds * liveCodes) / USER_CODE_SPACE);
}

/** The most live codes for which {@link guessProbability} stays below `target`. */
export function maxLiveCodes(globalPerMinute: number, ttlSeconds: number, target = 1e-6): number {
  return Math.ceil((target * USER_CODE_SPACE) / ((globalPerMinute / 60) * ttlSeconds)) - 1;
}

/**
 * Counters behind the limits. `add` must be atomic (concurrent adds from every instance sharing the counter all
 * count) and return the count after the change; a counter lives `ttlMs` after its last change. A count that drops to
 * 0 or below may be forgotten.
 */
export interface AttemptCounter {
  add(key: string, by: 1 | -1, ttlMs: number): Promise<number>;
}

/** The counters of one instance (the default, and right for the in-memory store: one instance only). */
export class MemoryAttemptCounter implements AttemptCounter {
  readonly #clock: Clock;
  readonly #counts = new Map<string, { count: number; until: number }>();

  constructor(clock: Clock = systemClock) {
    this.#clock = clock;
  }

  async add(key: string, by: 1 | -1, ttlMs: number): Promise<number> {
    const now = this.#clock.now();
    const entry = this.#counts.get(key);
    const count = (entry !== undefined && entry.until > now ? entry.count : 0) + by;
    if (count <= 0) this.#counts.delete(key);
    else this.#counts.set(key, { count, until: now + ttlMs });
    if (this.#counts.size > 1024) this.#prune(now);
    return count;
  }

  /** Entries only exist for failures (bounded by the global limit) and attempts in flight, so this stays small. */
  #prune(now: number): void {
    for (const [key, e] of this.#counts) if (e.until <= now) this.#counts.delete(key);
  }
}

/**
 * Counters in Redis, so the limits hold across every instance on one Redis. Each change is one MULTI of single-key
 * commands (INCRBY + PEXPIRE), atomic and Cluster-safe without a script. The client is borrowed, never closed.
 */
export class RedisAttemptCounter implements AttemptCounter {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  async add(key: string, by: 1 | -1, ttlMs: number): Promise<number> {
    const k = this.#prefix + key;
    let results: Array<[Error | null, unknown]> | null;
    try {
      results = await this.#redis.multi().incrby(k, by).pexpire(k, ttlMs).exec();
    } catch (err) {
      throw new UnavailableError('store', 'the attempt counter failed', { cause: err });
    }
    const first = results?.[0];
    if (first === undefined || first[0] !== null || typeof first[1] !== 'number') {
      throw new UnavailableError('store', 'the attempt counter failed', { cause: first?.[0] });
    }
    return first[1];
  }
}

type Attempt =
  | { limited: true; retryAfter: number }
  | { limited: false; /** the code was usable: take the attempt back */ succeeded(): Promise<void> };

/**
 * Counts code entries before they are looked up (so concurrent guesses cannot slip past the limit) and takes the
 * successful ones back: what stays counted is the failures. A success never resets a counter.
 */
class CodeEntryLimiter {
  readonly #counter: AttemptCounter;
  readonly #limits: CodeEntryLimits;
  readonly #clock: Clock;

  constructor(counter: AttemptCounter, limits: CodeEntryLimits, clock: Clock) {
    this.#counter = counter;
    this.#limits = limits;
    this.#clock = clock;
  }

  async begin(clientIp: string): Promise<Attempt> {
    const now = this.#clock.now();
    const slots = [
      { key: `fail:ip:${normalizeIP(clientIp)}`, limit: this.#limits.perIp },
      { key: 'fail:global', limit: this.#limits.global },
    ].map(({ key, limit }) => {
      const window = Math.floor(now / limit.windowMs);
      return {
        key: `${key}:${window}`,
        limit,
        ttlMs: 2 * limit.windowMs,
        endsAt: (window + 1) * limit.windowMs,
      };
    });
    const added: typeof slots = [];
    const undo = async () => {
      for (const s of added) await this.#counter.add(s.key, -1, s.ttlMs);
    };
    let retryAfter = 0;
    try {
      for (const s of slots) {
        const count = await this.#counter.add(s.key, 1, s.ttlMs);
        added.push(s);
        if (count > s.limit.max) retryAfter = Math.max(retryAfter, Math.ceil((s.endsAt - now) / 1000));
      }
    } catch (err) {
      await undo().catch(() => undefined);
      throw err;
    }
    if (retryAfter > 0) {
      // a refused attempt looked nothing up: it does not use the guessing budget
      await undo();
      return { limited: true, retryAfter };
    }
    return { limited: false, succeeded: undo };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The pages

export interface DevicePagesDeps {
  bridge: BridgeFlows;
  keys: Keys;
  config: Config;
  /** the effective public base URL (no trailing slash): the only origin POSTs are accepted from */
  publicUrl: string;
  metrics: Metrics;
  log: Logger;
  /** time for "asked 3 minutes ago" and the limit windows; default: the system clock */
  clock?: Clock;
  /** default: {@link DEFAULT_LIMITS} */
  limits?: Partial<CodeEntryLimits>;
  /** where the limit counters live; default: Redis when `redis` is given, else memory (this instance only) */
  counter?: AttemptCounter;
  /** a Redis client to keep the limits in (shared by every instance); borrowed, never closed */
  redis?: Redis;
  /** the upstream issuer, named on every page (RFC 8628 §5.3); default: `config.upstream.issuer` */
  upstreamIssuer?: string;
}

const CSRF_COOKIE = 'dg_csrf';
const STATE_COOKIE = 'dg_state';
const SID_PATTERN = /^[A-Za-z0-9_-]{43}$/;
/** The only fields each form may carry, each at most once; anything else (a `_method` override too) is a 400. */
const ENTRY_FIELDS = ['csrf', 'user_code'] as const;
const DECISION_FIELDS = ['csrf', 'user_code', 'decision'] as const;

class PageError extends Error {
  readonly status: number;
  readonly kind: ErrorKind;
  constructor(status: number, kind: ErrorKind) {
    super(kind);
    this.status = status;
    this.kind = kind;
  }
}

/**
 * Registers `GET /device`, `POST /device`, `POST /device/decision`, `GET /oauth/callback`, `GET /device/done` and the
 * stylesheet, in their own encapsulated scope (the security headers, form parser, cookies and limits apply to these
 * routes only). Other methods on these paths answer 405.
 */
export async function registerDevicePages(app: FastifyInstance, deps: DevicePagesDeps): Promise<void> {
  const { bridge, keys, metrics, log } = deps;
  const clock = deps.clock ?? systemClock;
  const limits: CodeEntryLimits = { ...DEFAULT_LIMITS, ...deps.limits };
  const publicOrigin = new URL(deps.publicUrl).origin;
  const secure = new URL(deps.publicUrl).protocol === 'https:';
  const issuer = deps.upstreamIssuer ?? deps.config.upstream?.issuer;
  const frame: Frame = { issuerHost: issuer === undefined ? undefined : new URL(issuer).host };
  const counter =
    deps.counter ??
    (deps.redis !== undefined
      ? new RedisAttemptCounter(deps.redis, `${deps.config.keyPrefix}page:`)
      : new MemoryAttemptCounter(clock));
  const limiter = new CodeEntryLimiter(counter, limits, clock);
  const csrfKey = createHmac('sha256', keys.cookieSecret).update('devicegate csrf').digest();
  const stateCookieMaxAge = deps.config.codeTtlSeconds + Math.ceil(GRACE_MS / 1000);

  // Where a form may lead: this origin, and the upstream's authorize endpoint, which the Approve POST redirects to
  // (Chromium applies form-action to the redirects that follow a form submission, and blocks the navigation
  // otherwise). The issuer's origin is known up front; an authorize endpoint on another origin is learned from the
  // first redirect BridgeFlows hands out. With no issuer known at all, any http(s) target is allowed rather than
  // blocking every approval (the pages have no injection point; this only loosens a second line of defence).
  const formTargets = new Set<string>();
  if (issuer !== undefined) formTargets.add(new URL(issuer).origin);
  else {
    formTargets.add('https:').add('http:');
    log.warn('code page: the upstream issuer is unknown; CSP form-action allows any http(s) target');
  }

  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    await scope.register(fastifyFormbody, { bodyLimit: 4096 });
    await scope.register(fastifyCookie, { secret: keys.cookieSecret });
    await scope.register(fastifyHelmet, {
      global: true,
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'"],
          formAction: ["'self'", () => [...formTargets].join(' ')],
          frameAncestors: ["'none'"],
          baseUri: ["'none'"],
        },
      },
      frameguard: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
      strictTransportSecurity: secure ? { maxAge: 31_536_000 } : false,
      crossOriginOpenerPolicy: { policy: 'same-origin' },
      crossOriginResourcePolicy: { policy: 'same-origin' },
    });
    await scope.register(fastifyRateLimit, {
      global: false,
      max: limits.requestsPerMinute,
      timeWindow: 60_000,
      // A per-instance flood guard only (in memory): the limits that matter for guessing (failed entries) are the
      // attempt counters above, shared through Redis. Kept off Redis so a Redis outage is a clean 503, not a 500.
      keyGenerator: (req) => normalizeIP(req.ip),
      addHeadersOnExceeding: {
        'x-ratelimit-limit': false,
        'x-ratelimit-remaining': false,
        'x-ratelimit-reset': false,
      },
      addHeaders: {
        'x-ratelimit-limit': false,
        'x-ratelimit-remaining': false,
        'x-ratelimit-reset': false,
        'retry-after': true,
      },
      errorResponseBuilder: (_req, ctx) =>
        Object.assign(new PageError(429, 'tooMany'), { retryAfter: ctx.ttl }),
    });
    const flood = { rateLimit: { max: limits.requestsPerMinute, timeWindow: 60_000 } };

    scope.addHook('onRequest', async (_req, reply) => {
      reply.header('cache-control', 'no-store');
    });

    scope.setErrorHandler((err: FastifyError | PageError | UnavailableError, req, reply) => {
      if (err instanceof PageError) {
        if (err.status === 429) {
          const ttl = (err as PageError & { retryAfter?: number }).retryAfter ?? 60_000;
          const seconds = Math.max(1, Math.ceil(ttl / 1000));
          return page(
            reply.header('retry-after', String(seconds)),
            429,
            errorPage(frame, 'tooMany', seconds),
          );
        }
        return page(reply, err.status, errorPage(frame, err.kind));
      }
      if (err instanceof UnavailableError) {
        log.warn(
          { route: req.routeOptions.url, dependency: err.dependency, err: describe(err.cause ?? err) },
          'page: dependency down',
        );
        return page(reply.header('retry-after', '5'), 503, errorPage(frame, 'unavailable'));
      }
      const status = 'statusCode' in err && typeof err.statusCode === 'number' ? err.statusCode : 500;
      if (status >= 400 && status < 500) {
        // body parser refusals: 415 for JSON or any other non-form type, 413 for a huge body, 400 for a bad one
        return page(reply, status, errorPage(frame, status === 404 ? 'notFound' : 'badRequest'));
      }
      log.error({ route: req.routeOptions.url, err: describe(err) }, 'page failed');
      return page(reply, 500, errorPage(frame, 'serverError'));
    });

    // -- helpers (closures over the deps) ------------------------------------------------------------------------

    /** The browser's session id for CSRF tokens; a new session cookie when it has none (GET only). */
    const session = (req: FastifyRequest, reply: FastifyReply | undefined): string | undefined => {
      const raw = req.cookies[CSRF_COOKIE];
      if (raw !== undefined) {
        const u = req.unsignCookie(raw);
        if (u.valid && u.value !== null && SID_PATTERN.test(u.value)) return u.value;
      }
      if (reply === undefined) return undefined;
      const sid = randomBytes(32).toString('base64url');
      reply.setCookie(CSRF_COOKIE, sid, {
        signed: true,
        httpOnly: true,
        sameSite: 'strict',
        secure,
        path: '/device',
      });
      return sid;
    };
    const csrfToken = (sid: string) => createHmac('sha256', csrfKey).update(sid).digest('base64url');

    /**
     * OWASP CSRF: Fetch Metadata, Origin, then the synchronizer token of this browser's session.
     *
     * `Origin: null` is what browsers send on our OWN form posts, because the pages say `Referrer-Policy: no-referrer`
     * (Fetch, "serializing a request origin"). So `null` passes only when the browser also says the post is
     * same-origin (`Sec-Fetch-Site: same-origin`) or is too old to say anything; a sandboxed or cross-site sender is
     * `cross-site`. Any real origin other than ours is refused. The token decides in every case.
     */
    const checkPost = (req: FastifyRequest, token: string | undefined): string => {
      const site = req.headers['sec-fetch-site'];
      if (site === 'cross-site') throw new PageError(403, 'csrf');
      const origin = req.headers.origin;
      if (origin === 'null') {
        if (site !== undefined && site !== 'same-origin') throw new PageError(403, 'csrf');
      } else if (origin !== undefined && origin !== publicOrigin) {
        throw new PageError(403, 'csrf');
      }
      const sid = session(req, undefined);
      if (sid === undefined || token === undefined) throw new PageError(403, 'csrf');
      const expected = Buffer.from(csrfToken(sid));
      const given = Buffer.from(token);
      if (given.length !== expected.length || !timingSafeEqual(given, expected))
        throw new PageError(403, 'csrf');
      return sid;
    };

    /** Starts a code entry against the limits; throws the 429 page when one is reached. */
    const beginAttempt = async (req: FastifyRequest) => {
      const attempt = await limiter.begin(req.ip);
      if (attempt.limited) {
        metrics.inc('devicegate_code_entry_limited_total');
        throw Object.assign(new PageError(429, 'tooMany'), { retryAfter: attempt.retryAfter * 1000 });
      }
      return attempt;
    };

    /** The one answer for a code that is not usable (unknown, malformed, expired, used, denied). */
    const notUsable = (reply: FastifyReply, sid: string) => {
      metrics.inc('devicegate_code_entry_failures_total');
      return page(reply, 400, entryPage(frame, { csrfToken: csrfToken(sid), invalid: true }));
    };

    // -- routes -------------------------------------------------------------------------------------------------

    scope.get(STYLESHEET_PATH, async (_req, reply) => reply.type('text/css; charset=utf-8').send(STYLESHEET));
    scope.get(FAVICON_PATH, async (_req, reply) => reply.type('image/svg+xml').send(FAVICON_SVG));

    scope.get('/device', async (req, reply) => {
      const sid = session(req, reply)!;
      const q = req.query as Record<string, unknown>;
      let prefill: string | undefined;
      if (typeof q['user_code'] === 'string' && q['user_code'].length <= MAX_USER_CODE_INPUT) {
        const canonical = normalizeUserCode(q['user_code']);
        prefill = canonical === undefined ? q['user_code'] : formatUserCode(canonical);
      }
      return page(
        reply,
        200,
        entryPage(frame, { csrfToken: csrfToken(sid), ...(prefill !== undefined && { prefill }) }),
      );
    });

    scope.post('/device', { config: flood }, async (req, reply) => {
      const form = formFields(req.body, ENTRY_FIELDS);
      const sid = checkPost(req, form.csrf);
      const attempt = await beginAttempt(req);
      const flow = await bridge.lookup(form.user_code ?? '').catch(async (err: unknown) => {
        await attempt.succeeded().catch(() => undefined);
        throw err;
      });
      if (flow === undefined) return notUsable(reply, sid);
      await attempt.succeeded();
      return page(reply, 200, confirmPage(frame, { csrfToken: csrfToken(sid), flow, now: clock.now() }));
    });

    scope.post('/device/decision', { config: flood }, async (req, reply) => {
      const form = formFields(req.body, DECISION_FIELDS);
      if (form.decision !== 'approve' && form.decision !== 'deny') throw new PageError(400, 'badRequest');
      const sid = checkPost(req, form.csrf);
      const attempt = await beginAttempt(req);
      const code = form.user_code ?? '';
      let target: string | undefined;
      try {
        if (form.decision === 'approve') {
          const approved = await bridge.approve(code);
          if (approved !== undefined) {
            target = approved.redirectUrl;
            formTargets.add(new URL(approved.redirectUrl).origin);
            reply.setCookie(STATE_COOKIE, approved.state, {
              signed: true,
              httpOnly: true,
              // Lax: the cookie must come back with the upstream's top-level redirect to the callback
              sameSite: 'lax',
              secure,
              path: '/oauth/callback',
              // no longer than a flow (and so its state) can live
              maxAge: stateCookieMaxAge,
            });
          }
        } else if (await bridge.deny(code)) {
          target = doneUrl('denied');
        }
      } catch (err) {
        await attempt.succeeded().catch(() => undefined);
        throw err;
      }
      if (target === undefined) return notUsable(reply, sid);
      await attempt.succeeded();
      return reply.redirect(target, 303);
    });

    scope.get('/oauth/callback', { config: flood }, async (req, reply) => {
      const raw = req.cookies[STATE_COOKIE];
      let browserState: string | undefined;
      if (raw !== undefined) {
        const u = req.unsignCookie(raw);
        if (u.valid && u.value !== null) browserState = u.value;
      }
      reply.clearCookie(STATE_COOKIE, { path: '/oauth/callback', httpOnly: true, sameSite: 'lax', secure });
      const params = new URL(req.url, publicOrigin).searchParams;
      const r = await bridge.callback(params, browserState);
      if (r.outcome === 'invalid') return page(reply, 400, errorPage(frame, 'callback'));
      if (r.outcome === 'failed') log.info({ error: r.error.code }, 'bridge sign-in failed');
      return reply.redirect(doneUrl(r.outcome), 303);
    });

    scope.get('/device/done', async (req, reply) => {
      const result = (req.query as Record<string, unknown>)['result'];
      if (!isResult(result)) throw new PageError(404, 'notFound');
      return page(reply, 200, outcomePage(frame, result));
    });

    // Only GET/HEAD for pages and POST for forms: everything else is 405 with the security headers.
    const notAllowed = (allow: string) => async (_req: FastifyRequest, reply: FastifyReply) =>
      page(reply.header('allow', allow), 405, errorPage(frame, 'notFound'));
    const others = ['PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;
    scope.route({ method: [...others], url: '/device', handler: notAllowed('GET, HEAD, POST') });
    scope.route({ method: ['GET', 'HEAD', ...others], url: '/device/decision', handler: notAllowed('POST') });
    scope.route({ method: ['POST', ...others], url: '/oauth/callback', handler: notAllowed('GET, HEAD') });
    scope.route({ method: ['POST', ...others], url: '/device/done', handler: notAllowed('GET, HEAD') });
  });
}

function page(reply: FastifyReply, status: number, body: string): FastifyReply {
  return reply.code(status).type('text/html; charset=utf-8').send(body);
}

function doneUrl(result: Result): string {
  return `/device/done?result=${result}`;
}

/**
 * The fields of a form body: each allowed field at most once, nothing else. Anything else (JSON is refused earlier by
 * the content-type parser; a repeated field parses as an array; unknown fields such as `_method`) is a 400.
 */
function formFields<K extends string>(body: unknown, allowed: readonly K[]): Partial<Record<K, string>> {
  if (typeof body !== 'object' || body === null) throw new PageError(400, 'badRequest');
  const out: Partial<Record<K, string>> = {};
  for (const [key, value] of Object.entries(body)) {
    if (!(allowed as readonly string[]).includes(key) || typeof value !== 'string') {
      throw new PageError(400, 'badRequest');
    }
    out[key as K] = value;
  }
  return out;
}

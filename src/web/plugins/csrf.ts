/**
 * The browser session of the pages, and the cross-site request forgery defence of their POSTs (OWASP CSRF cheat
 * sheet): Fetch Metadata, `Origin`, then a synchronizer token bound to the browser's session cookie.
 * {@link CsrfSessions.preHandler} runs on every form route after the body is validated and before the handler; the
 * handler reads the verified session from `req.csrfSession`.
 *
 * The session cookie (`__Host-dg_session` on https, `dg_session` on http; signed, HttpOnly) is `Path=/` and
 * `SameSite=Lax` because it must also come back on the upstream's top-level redirect to `/oauth/callback`: the OAuth
 * `state` is bound to the session that approved (src/service/bridge.ts). Lax lets it ride cross-site top-level GETs
 * only; the POSTs stay protected by the checks below, which never rely on SameSite.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PageError } from '../errors.ts';
import { pageCookieName } from './cookies.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The browser session the CSRF preHandler verified (form routes only; empty elsewhere). */
    csrfSession: string;
  }
}

const SESSION_COOKIE = 'dg_session';
const SID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export interface CsrfOptions {
  cookieSecret: Buffer | string;
  /** the only origin POSTs are accepted from (the public URL's) */
  publicOrigin: string;
  /** the public URL is https: the session cookie is `Secure` */
  secure: boolean;
}

export class CsrfSessions {
  readonly #key: Buffer;
  readonly #publicOrigin: string;
  readonly #secure: boolean;
  readonly #cookie: string;

  constructor(o: CsrfOptions) {
    this.#key = createHmac('sha256', o.cookieSecret).update('devicegate csrf').digest();
    this.#publicOrigin = o.publicOrigin;
    this.#secure = o.secure;
    this.#cookie = pageCookieName(SESSION_COOKIE, o.secure);
  }

  /** The browser's session id; a new one, with its cookie set on `reply`, when it has none (pages that show forms). */
  open(req: FastifyRequest, reply: FastifyReply): string {
    const existing = this.session(req);
    if (existing !== undefined) return existing;
    const sid = randomBytes(32).toString('base64url');
    reply.setCookie(this.#cookie, sid, {
      signed: true,
      httpOnly: true,
      sameSite: 'lax',
      secure: this.#secure,
      path: '/',
    });
    return sid;
  }

  /** The session id of the browser's valid, signed session cookie, if it sent one (for the OAuth callback). */
  session(req: FastifyRequest): string | undefined {
    const raw = req.cookies[this.#cookie];
    if (raw === undefined) return undefined;
    const u = req.unsignCookie(raw);
    return u.valid && u.value !== null && SID_PATTERN.test(u.value) ? u.value : undefined;
  }

  /** The synchronizer token a form of this session carries. */
  token(sid: string): string {
    return createHmac('sha256', this.#key).update(sid).digest('base64url');
  }

  /**
   * Refuses (403, the CSRF page) a POST that is not from our own page; sets `req.csrfSession` otherwise.
   *
   * `Origin: null` is what browsers send on our OWN form posts, because the pages say `Referrer-Policy: no-referrer`
   * (Fetch, "serializing a request origin"). So `null` passes only when the browser also says the post is
   * same-origin (`Sec-Fetch-Site: same-origin`) or is too old to say anything; a sandboxed or cross-site sender is
   * `cross-site`. Any real origin other than ours is refused. The token decides in every case.
   */
  readonly preHandler = async (req: FastifyRequest): Promise<void> => {
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site') throw new PageError(403, 'csrf');
    const origin = req.headers.origin;
    if (origin === 'null') {
      if (site !== undefined && site !== 'same-origin') throw new PageError(403, 'csrf');
    } else if (origin !== undefined && origin !== this.#publicOrigin) {
      throw new PageError(403, 'csrf');
    }
    const sid = this.session(req);
    const token = formToken(req.body);
    if (sid === undefined || token === undefined) throw new PageError(403, 'csrf');
    const expected = Buffer.from(this.token(sid));
    const given = Buffer.from(token);
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new PageError(403, 'csrf');
    req.csrfSession = sid;
  };
}

/** The `csrf` field of a validated form body. */
function formToken(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || !('csrf' in body)) return undefined;
  return typeof body.csrf === 'string' ? body.csrf : undefined;
}

/**
 * Cross-site request forgery defence of the pages' POSTs (OWASP CSRF cheat sheet): Fetch Metadata, `Origin`, then a
 * synchronizer token bound to the browser's session cookie. {@link CsrfSessions.preHandler} runs on every form route
 * after the body is validated and before the handler; the handler reads the verified session from
 * `req.csrfSession`.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PageError } from '../errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The browser session the CSRF preHandler verified (form routes only; empty elsewhere). */
    csrfSession: string;
  }
}

const CSRF_COOKIE = 'dg_csrf';
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

  constructor(o: CsrfOptions) {
    this.#key = createHmac('sha256', o.cookieSecret).update('devicegate csrf').digest();
    this.#publicOrigin = o.publicOrigin;
    this.#secure = o.secure;
  }

  /** The browser's session id; a new one, with its cookie set on `reply`, when it has none (pages that show forms). */
  open(req: FastifyRequest, reply: FastifyReply): string {
    const existing = this.#existing(req);
    if (existing !== undefined) return existing;
    const sid = randomBytes(32).toString('base64url');
    reply.setCookie(CSRF_COOKIE, sid, {
      signed: true,
      httpOnly: true,
      sameSite: 'strict',
      secure: this.#secure,
      path: '/device',
    });
    return sid;
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
    const sid = this.#existing(req);
    const token = formToken(req.body);
    if (sid === undefined || token === undefined) throw new PageError(403, 'csrf');
    const expected = Buffer.from(this.token(sid));
    const given = Buffer.from(token);
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new PageError(403, 'csrf');
    req.csrfSession = sid;
  };

  #existing(req: FastifyRequest): string | undefined {
    const raw = req.cookies[CSRF_COOKIE];
    if (raw === undefined) return undefined;
    const u = req.unsignCookie(raw);
    return u.valid && u.value !== null && SID_PATTERN.test(u.value) ? u.value : undefined;
  }
}

/** The `csrf` field of a validated form body. */
function formToken(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || !('csrf' in body)) return undefined;
  return typeof body.csrf === 'string' ? body.csrf : undefined;
}

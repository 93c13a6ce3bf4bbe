/**
 * How the pages fail: {@link PageError} is an answer with an error page, and {@link pageErrorHandler} turns every
 * error of the pages' scope into one of those pages, with the security headers already set by the scope's hooks.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { UnavailableError } from '../core/errors.ts';
import type { Catalogue } from './i18n/index.ts';
import { type ErrorKind, errorPage } from './views/pages.ts';

/** An error page to answer with: `status` and which page; `retryAfter` (seconds) for 429. */
export class PageError extends Error {
  readonly status: number;
  readonly kind: ErrorKind;
  readonly retryAfter: number | undefined;
  constructor(status: number, kind: ErrorKind, retryAfter?: number) {
    super(kind);
    this.status = status;
    this.kind = kind;
    this.retryAfter = retryAfter;
  }
}

/** "Too many": the 429 page of both the flood guard and the failed-entry guard. */
export function tooMany(retryAfterSeconds: number): PageError {
  return new PageError(429, 'tooMany', Math.max(1, Math.ceil(retryAfterSeconds)));
}

/** Sends an HTML page. */
export function page(reply: FastifyReply, status: number, body: string): FastifyReply {
  return reply.code(status).type('text/html; charset=utf-8').send(body);
}

/**
 * The error handler of the pages' scope: a {@link PageError} is its page (429 with `Retry-After`); an
 * {@link UnavailableError} is the 503 page with `Retry-After: 5`; fastify's own refusals (validation 400, body too
 * large 413, not a form 415, 404) are the "bad request" or "not found" page with their status; anything else is
 * logged and answered with the 500 page.
 */
export function pageErrorHandler(textFor: (req: FastifyRequest) => Catalogue, log: Logger) {
  return (err: FastifyError | PageError | UnavailableError, req: FastifyRequest, reply: FastifyReply) => {
    const t = textFor(req);
    if (err instanceof PageError) {
      if (err.retryAfter !== undefined) {
        return page(
          reply.header('retry-after', String(err.retryAfter)),
          err.status,
          errorPage(t, err.kind, { retryAfter: err.retryAfter }),
        );
      }
      return page(reply, err.status, errorPage(t, err.kind));
    }
    if (err instanceof UnavailableError) {
      log.warn({ route: req.routeOptions.url, dependency: err.dependency, err }, 'page: dependency down');
      return page(reply.header('retry-after', '5'), 503, errorPage(t, 'unavailable'));
    }
    const status = 'statusCode' in err && typeof err.statusCode === 'number' ? err.statusCode : 500;
    if (status >= 400 && status < 500) {
      return page(reply, status, errorPage(t, status === 404 ? 'notFound' : 'badRequest'));
    }
    log.error({ route: req.routeOptions.url, err }, 'page failed');
    return page(reply, 500, errorPage(t, 'serverError'));
  };
}

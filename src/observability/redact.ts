/**
 * URLs as they may be shown: in logs, the banner, `/readyz`, error messages and `config check`. A URL's userinfo
 * (`mqtt://user:password@host`, `redis://:password@host`) is a credential, and `/readyz` is unauthenticated, so every
 * place that shows a configured URL shows it through {@link redactUrl}; the unredacted URL only goes to the client
 * library that connects with it.
 */

/** What stands in for the userinfo of a shown URL. */
export const REDACTED = '***';

/**
 * `url` with its whole userinfo (user name and password) replaced by `***`: `mqtt://***@host:1883`. Everything up to
 * the last `@` after the scheme counts as userinfo, so a password with a raw `@`, `/` or `:` is hidden too (a path
 * with an `@` is over-redacted, never under-). Text that is not `scheme://…` is returned unchanged.
 */
export function redactUrl(url: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url);
  if (scheme === null) return url;
  const at = url.lastIndexOf('@');
  if (at < scheme[0].length) return url;
  return `${scheme[0]}${REDACTED}${url.slice(at)}`;
}

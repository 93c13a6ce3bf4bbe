/**
 * The pages' languages: one catalogue per language (./en.ts, ./de.ts), chosen per request from `Accept-Language`
 * (RFC 9110 §12.5.4), English when the browser asks for none we have.
 */
import { de } from './de.ts';
import { type Catalogue, en } from './en.ts';

export type { Catalogue } from './en.ts';

/** Every language the pages speak, by primary language subtag. The first is the default. */
export const CATALOGUES: Readonly<Record<string, Catalogue>> = { en, de };

/**
 * The catalogue for an `Accept-Language` header: the browser's preferences by weight (ties keep their order), each
 * range matched by its primary subtag (`de-AT` is German); `q=0` means "not this one". English otherwise.
 */
export function negotiate(acceptLanguage: string | undefined): Catalogue {
  if (acceptLanguage === undefined) return en;
  const ranges = acceptLanguage
    .split(',')
    .map((part, order) => {
      const [tag = '', ...params] = part.trim().split(';');
      const q = params
        .map((p) => /^\s*q=([01](?:\.\d{0,3})?)\s*$/i.exec(p)?.[1])
        .find((v) => v !== undefined);
      return {
        primary: tag.trim().toLowerCase().split('-')[0] ?? '',
        q: q === undefined ? 1 : Number(q),
        order,
      };
    })
    .filter((r) => r.q > 0)
    .sort((a, b) => b.q - a.q || a.order - b.order);
  for (const r of ranges) {
    if (r.primary === '*') return en;
    const found = Object.hasOwn(CATALOGUES, r.primary) ? CATALOGUES[r.primary] : undefined;
    if (found !== undefined) return found;
  }
  return en;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

/**
 * `at` relative to `now` in words of the catalogue's language, rendered on the server (the pages run no script and
 * cannot know the reader's time zone): "2 minutes ago", "in 5 minutes", "vor 1 Stunde". Under a minute in the past
 * is the catalogue's "just now". Whole minutes, rounded towards "now"; hours from 90 minutes on.
 */
export function relativeTime(t: Catalogue, at: number, now: number): string {
  const ms = at - now;
  if (ms <= 0 && ms > -MINUTE_MS) return t.justNow;
  const format = new Intl.RelativeTimeFormat(t.lang, { numeric: 'always' });
  const abs = Math.abs(ms);
  const sign = ms < 0 ? -1 : 1;
  if (abs >= 90 * MINUTE_MS) return format.format(sign * Math.round(abs / HOUR_MS), 'hour');
  return format.format(sign * Math.max(1, Math.floor(abs / MINUTE_MS)), 'minute');
}

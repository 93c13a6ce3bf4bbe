/**
 * Every deviation from the standards that the gateway tolerates in an upstream's answers, each with the provider that
 * needs it (docs/upstreams.md). Nothing here relaxes what security rests on: issuer checks, TLS outside loopback, no
 * redirects, size and time limits (./http.ts, ./discovery.ts) stay as strict as they are.
 *
 * | deviation                                                          | provider | standard                |
 * | ------------------------------------------------------------------ | -------- | ----------------------- |
 * | an OAuth error in an HTTP 200 body                                 | GitHub   | RFC 6749 §5.2 (400)     |
 * | `application/x-www-form-urlencoded` answers unless asked for JSON  | GitHub   | RFC 6749 §5.1 (JSON)    |
 * | `verification_url` for `verification_uri`                          | Google   | RFC 8628 §3.2           |
 * | 428 for `authorization_pending`, 403 for `slow_down`               | Google   | RFC 6749 §5.2 (400)     |
 * | a `slow_down` carrying the new `interval`                          | GitHub   | RFC 8628 §3.5 (+5 s)    |
 * | a non-positive `interval` (dropped: the default applies)           | various  | RFC 8628 §3.2           |
 * | `token_type` in any case (`bearer`, `BEARER`)                      | GitHub   | RFC 6749 §5.1 (it says case-insensitive; oauth4webapi lowercases) |
 *
 * The 428 / 403 one needs no code: every 4xx is read by its `error` field (./exchange.ts, ./errors.ts).
 */
import type { UpstreamFetch } from './http.ts';

/** Longest poll interval accepted from an upstream (s), at the start and on `slow_down`; longer ones are cut. */
export const MAX_INTERVAL_S = 60;

/** The endpoints whose answers are normalised (discovery is a GET and is read strictly). */
export type NormalisedEndpoint =
  'device_authorization' | 'token_poll' | 'code_exchange' | 'refresh' | 'revocation';

/**
 * GitHub answers form-encoded unless the request says `Accept: application/json`. oauth4webapi asks for JSON
 * everywhere but at the revocation endpoint, where it sends no `Accept`: this adds it where it is missing.
 */
export function acceptingJson(f: UpstreamFetch): UpstreamFetch {
  return (url, init) => {
    if (Object.keys(init.headers).some((name) => name.toLowerCase() === 'accept')) return f(url, init);
    return f(url, { ...init, headers: { ...init.headers, accept: 'application/json' } });
  };
}

/**
 * An answer as the standards would have it, for oauth4webapi to check: a form-encoded body becomes JSON (numbers
 * where RFC 6749 / RFC 8628 have numbers), an HTTP 200 carrying `error` becomes a 400, and at the device authorization
 * endpoint `verification_url` stands in for a missing `verification_uri` and a non-positive `interval` is dropped.
 * Anything that is neither JSON nor a form stays as it is, for oauth4webapi to refuse.
 */
export async function normalised(endpoint: NormalisedEndpoint, res: Response): Promise<Response> {
  const type = res.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase();
  let body: Record<string, unknown>;
  let changed = false;
  if (type === 'application/x-www-form-urlencoded') {
    body = fromForm(await res.clone().text());
    changed = true;
  } else if (type === 'application/json') {
    const json = await jsonObject(res);
    if (json === undefined) return res;
    body = json;
  } else {
    return res;
  }
  let status = res.status;
  if (status === 200 && typeof body.error === 'string') {
    status = 400;
    changed = true;
  }
  if (endpoint === 'device_authorization' && status === 200) changed = deviceAliases(body) || changed;
  if (!changed) return res;
  const headers = new Headers(res.headers);
  headers.set('content-type', 'application/json');
  headers.delete('content-length');
  await res.body?.cancel().catch(() => undefined);
  return new Response(JSON.stringify(body), { status, statusText: '', headers });
}

/** RFC 8628 §3.5 as GitHub does it: the new interval in the `slow_down` answer, clamped; `undefined` when absent. */
export function slowDownInterval(body: unknown): number | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const interval = (body as { interval?: unknown }).interval;
  if (typeof interval !== 'number' || !Number.isFinite(interval) || interval < 1) return undefined;
  return Math.min(MAX_INTERVAL_S, Math.ceil(interval));
}

/** RFC 6749 §5.1 spelling for devices: oauth4webapi lowercases the (case-insensitive) type. */
export function rfcTokenType(lowercased: string): string {
  return lowercased === 'bearer' ? 'Bearer' : lowercased === 'dpop' ? 'DPoP' : lowercased;
}

/** Google's `verification_url`, and a non-positive `interval`; whether anything changed. */
function deviceAliases(body: Record<string, unknown>): boolean {
  let changed = false;
  if (body.verification_uri === undefined && typeof body.verification_url === 'string') {
    body.verification_uri = body.verification_url;
    changed = true;
  }
  if (typeof body.interval === 'number' && body.interval <= 0) {
    delete body.interval;
    changed = true;
  }
  return changed;
}

/** Members RFC 6749 §5.1 and RFC 8628 §3.2 define as numbers, which a form carries as digits. */
const NUMERIC = new Set(['expires_in', 'interval', 'refresh_token_expires_in']);

function fromForm(text: string): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [name, value] of new URLSearchParams(text)) {
    body[name] = NUMERIC.has(name) && /^\d{1,9}$/.test(value) ? Number(value) : value;
  }
  return body;
}

async function jsonObject(res: Response): Promise<Record<string, unknown> | undefined> {
  try {
    const value: unknown = await res.clone().json();
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The HTTP client oauth4webapi uses for every upstream exchange (its `[customFetch]` hook): undici's `request`, which
 * costs far less CPU per call than the global `fetch`, wrapped to behave as the hook expects. Contract:
 * - redirects are never followed (a 3xx comes back as it is; credentials never go to another host);
 * - the whole body is read before the `Response` is returned, so the caller's `signal` (the per-request deadline)
 *   covers the body too, and a slow trickle of bytes cannot outlive it;
 * - a body larger than {@link MAX_RESPONSE_BYTES} is refused (the connection is dropped).
 */
import type { CustomFetchOptions } from 'oauth4webapi';
import { request } from 'undici';

/** Largest upstream response body accepted (bytes). Metadata and token responses are a few KiB. */
export const MAX_RESPONSE_BYTES = 256 * 1024;

/** The options oauth4webapi passes to its `[customFetch]` hook (GET without a body, POST with a form). */
export type UpstreamFetchInit = CustomFetchOptions<string, URLSearchParams | undefined>;

export type UpstreamFetch = (url: string, init: UpstreamFetchInit) => Promise<Response>;

/** Raised when a body exceeds the cap. */
export class ResponseTooLargeError extends Error {
  constructor(limit: number) {
    super(`the upstream response is larger than ${limit} bytes`);
    this.name = 'ResponseTooLargeError';
  }
}

/** Statuses whose `Response` must have a null body (Fetch spec "null body status"). */
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

/** A `fetch`-compatible function for oauth4webapi's `[customFetch]` (see the module comment for its contract). */
export function boundedFetch(maxBytes: number = MAX_RESPONSE_BYTES): UpstreamFetch {
  return async (url, init) => {
    const body = init.body === undefined ? undefined : init.body.toString();
    const res = await request(url, {
      method: init.method as 'GET' | 'POST',
      headers: init.headers,
      ...(body !== undefined && { body }),
      ...(init.signal !== undefined && { signal: init.signal }),
    });
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      res.body.destroy();
      throw new ResponseTooLargeError(maxBytes);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) {
        res.body.destroy();
        throw new ResponseTooLargeError(maxBytes);
      }
      chunks.push(chunk);
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(res.headers)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
    }
    return new Response(NULL_BODY_STATUS.has(res.statusCode) ? null : Buffer.concat(chunks), {
      status: res.statusCode,
      statusText: res.statusText ?? '',
      headers,
    });
  };
}

/** Adapts a `fetch`-like function (e.g. a test's or the global one) to the hook, never following redirects. */
export function fromFetch(f: typeof fetch): UpstreamFetch {
  return (url, init) =>
    f(url, {
      method: init.method,
      headers: init.headers,
      redirect: 'manual',
      ...(init.body !== undefined && { body: init.body }),
      ...(init.signal !== undefined && { signal: init.signal }),
    });
}

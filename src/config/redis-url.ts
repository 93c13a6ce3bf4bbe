/**
 * `DEVICEGATE_REDIS_URL`: a plain Redis URL (`redis://`, `rediss://`, as ioredis reads them) or a Sentinel URL
 *
 *     redis+sentinel://[[username]:password@]host[:port][,host[:port]...]/masterName
 *
 * listing the sentinels (port 26379 by default) and the name of the master they watch; the credentials, when given,
 * are the master's. ioredis asks the sentinels where the master is and follows a failover.
 */

/** Where the master is found: ioredis' `sentinels` and `name` options (and the master's credentials). */
export interface SentinelTarget {
  readonly sentinels: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  readonly name: string;
  readonly username?: string;
  readonly password?: string;
}

const SENTINEL = 'redis+sentinel:';
const SENTINEL_PORT = 26379;

/** A valid `DEVICEGATE_REDIS_URL`: the URL as given, and its sentinels when it is a Sentinel URL. */
export interface RedisTarget {
  readonly url: string;
  readonly sentinel?: SentinelTarget;
}

/** The target `value` names, or the problem with it as a sentence. */
export function parseRedisUrl(value: string): RedisTarget | string {
  if (value.startsWith(`${SENTINEL}//`)) {
    const sentinel = parseSentinelUrl(value);
    return typeof sentinel === 'string' ? sentinel : { url: value, sentinel };
  }
  if (URL.canParse(value) && ['redis:', 'rediss:'].includes(new URL(value).protocol)) return { url: value };
  return 'must be a URL (redis:, rediss: or redis+sentinel:)';
}

/** The target, or the problem as a sentence. */
function parseSentinelUrl(value: string): SentinelTarget | string {
  const rest = value.slice(`${SENTINEL}//`.length);
  const slash = rest.indexOf('/');
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const name = slash < 0 ? '' : decoded(rest.slice(slash + 1));
  if (name === undefined || !/^[^/\s]+$/.test(name)) return 'a Sentinel URL ends with /masterName';
  const at = authority.lastIndexOf('@');
  const hostList = authority.slice(at + 1);
  const sentinels: Array<{ host: string; port: number }> = [];
  for (const entry of hostList.split(',')) {
    const url = URL.canParse(`redis://${entry}`) ? new URL(`redis://${entry}`) : undefined;
    if (entry === '' || url === undefined || url.hostname === '' || url.pathname !== '') {
      return `"${entry}" is not a host[:port] of a sentinel`;
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    sentinels.push({ host, port: url.port === '' ? SENTINEL_PORT : Number(url.port) });
  }
  if (at < 0) return { sentinels, name };
  const userinfo = authority.slice(0, at);
  const colon = userinfo.indexOf(':');
  const username = decoded(colon < 0 ? userinfo : userinfo.slice(0, colon));
  const password = colon < 0 ? '' : decoded(userinfo.slice(colon + 1));
  if (username === undefined || password === undefined)
    return 'the credentials are not valid percent-encoding';
  return {
    sentinels,
    name,
    ...(username !== '' && { username }),
    ...(password !== '' && { password }),
  };
}

/** `decodeURIComponent`, with `undefined` for a malformed escape instead of a URIError. */
function decoded(part: string): string | undefined {
  try {
    return decodeURIComponent(part);
  } catch {
    return undefined;
  }
}

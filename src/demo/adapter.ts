/**
 * In-memory storage for the demo identity provider: one store per provider instance (so two demo IdPs in one
 * process never share state), gone when the process ends. Entries stay a little past their expiry so the provider can
 * still answer `expired_token` rather than "not found" (it looks codes up with `ignoreExpiration`).
 */
import type { Adapter, AdapterFactory, AdapterPayload } from 'oidc-provider';

/** How long an expired entry is kept before it is swept (seconds). */
const RETAIN_EXPIRED_S = 300;
/** At most one sweep per this many milliseconds. */
const SWEEP_EVERY_MS = 30_000;

interface Entry {
  payload: AdapterPayload;
  /** ms since the epoch after which the entry is dropped; Infinity for none */
  dropAt: number;
}

/** Models whose entries belong to a grant and are revoked with it. */
const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

/** A fresh, private store; pass the result as the provider's `adapter`. */
export function memoryAdapterFactory(now: () => number = Date.now): AdapterFactory {
  const store = memoryStore(now);
  return (model: string): Adapter => {
    const keyOf = (id: string) => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        store.put(model, keyOf(id), payload, expiresIn);
      },
      async find(id) {
        return store.live(keyOf(id));
      },
      async findByUid(uid) {
        return store.lookup(`uid:${uid}`);
      },
      async findByUserCode(userCode) {
        return store.lookup(`userCode:${userCode}`);
      },
      async consume(id) {
        store.consume(keyOf(id));
      },
      async destroy(id) {
        store.remove(keyOf(id));
      },
      async revokeByGrantId(grantId) {
        store.revokeGrant(grantId);
      },
    };
  };
}

/** The entries of every model, keyed `{model}:{id}`, with the secondary indexes the adapter looks things up by. */
function memoryStore(now: () => number) {
  const entries = new Map<string, Entry>();
  /** secondary index (`uid:{uid}`, `userCode:{code}`) → primary key */
  const index = new Map<string, string>();
  /** grant id → primary keys */
  const grants = new Map<string, Set<string>>();
  let lastSweep = now();

  const sweep = () => {
    const t = now();
    if (t - lastSweep < SWEEP_EVERY_MS) return;
    lastSweep = t;
    for (const [key, entry] of entries) if (entry.dropAt <= t) remove(key);
  };

  const live = (key: string): AdapterPayload | undefined => {
    const entry = entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.dropAt <= now()) {
      remove(key);
      return undefined;
    }
    return entry.payload;
  };

  const remove = (key: string) => {
    const entry = entries.get(key);
    entries.delete(key);
    if (entry === undefined) return;
    const { uid, userCode, grantId } = entry.payload;
    if (uid !== undefined && index.get(`uid:${uid}`) === key) index.delete(`uid:${uid}`);
    if (userCode !== undefined && index.get(`userCode:${userCode}`) === key)
      index.delete(`userCode:${userCode}`);
    if (grantId !== undefined) grants.get(grantId)?.delete(key);
  };

  const put = (model: string, key: string, payload: AdapterPayload, expiresIn: number | undefined) => {
    sweep();
    remove(key);
    const dropAt = typeof expiresIn === 'number' ? now() + (expiresIn + RETAIN_EXPIRED_S) * 1000 : Infinity;
    entries.set(key, { payload: { ...payload }, dropAt });
    if (model === 'Session' && payload.uid !== undefined) index.set(`uid:${payload.uid}`, key);
    if (payload.userCode !== undefined) index.set(`userCode:${payload.userCode}`, key);
    if (GRANTABLE.has(model) && payload.grantId !== undefined) {
      const members = grants.get(payload.grantId) ?? new Set<string>();
      members.add(key);
      grants.set(payload.grantId, members);
    }
  };

  return {
    put,
    live,
    remove,
    lookup(indexKey: string): AdapterPayload | undefined {
      const key = index.get(indexKey);
      return key === undefined ? undefined : live(key);
    },
    consume(key: string): void {
      const entry = entries.get(key);
      if (entry !== undefined) entry.payload = { ...entry.payload, consumed: Math.floor(now() / 1000) };
    },
    revokeGrant(grantId: string): void {
      const members = grants.get(grantId);
      grants.delete(grantId);
      for (const key of members ?? []) remove(key);
    },
  };
}

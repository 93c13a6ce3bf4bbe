/**
 * How a flow is written to a store: public fields as compact JSON (device id and rid live in the key), secrets sealed
 * with AES-256-GCM bound to the flow id. A Redis dump shows no token, device code, PKCE verifier or user code.
 *
 * The stored form is small on purpose (Redis memory per pending flow is a documented budget): one- or two-letter
 * names, times after `createdAt` stored as offsets from it, absent fields omitted, and the sealed secrets under `x`.
 * Bodies in the first, long form (`mode`, `s`, full names; written before this form existed) are still read.
 *
 * Sealing is the expensive part of encoding, so a secrets object that was sealed (or opened) for a flow before is
 * not sealed again: flows are never mutated, and the engine passes unchanged secrets on as the same object. Only the
 * sealed form is remembered (in a WeakMap keyed by the secrets object), never the plaintext.
 */
import type { Flow, FlowSecrets, TokenSet } from '../core/flow.ts';
import { flowId } from '../core/flow.ts';
import type { Keys } from '../core/crypto.ts';
import type { FlowCodec } from '../store/types.ts';

/** The stored public part. Times other than `c` are milliseconds after `c` (createdAt). */
interface Compact {
  /** mode: `d` device (relay), `a` authorization_code (bridge) */
  m: 'd' | 'a';
  /** state */
  t: Flow['state'];
  /** scope */
  s: string;
  /** createdAt (ms since the epoch) */
  c: number;
  /** expiresAt − createdAt */
  e: number;
  /** interval (s) */
  i: number;
  /** nextPollAt − createdAt */
  n?: number;
  /** failures */
  f?: number;
  /** verificationUri */
  u?: string;
  jwk?: Flow['jwk'];
  /** device */
  d?: Flow['device'];
  /** network */
  ip?: string;
  /** approvedAt − createdAt */
  a?: number;
  /** error: [code, description] */
  er?: [NonNullable<Flow['error']>['code'], string];
  /** deliveredAt − createdAt */
  dl?: number;
  /** the sealed secrets */
  x: string;
}

/** The sealed plaintext: short names for the secrets. */
interface CompactSecrets {
  u: string;
  vc?: string;
  dc?: string;
  cv?: string;
  no?: string;
  tk?: TokenSet;
}

/** The first stored form, still read. */
type Legacy = Omit<Flow, 'deviceId' | 'rid' | 'secrets'> & { s: string };

export function flowCodec(keys: Keys): FlowCodec {
  /** The sealed form of a secrets object, and the flow it was sealed for (the AAD). */
  const sealedOf = new WeakMap<FlowSecrets, { aad: string; sealed: string }>();

  const seal = (secrets: FlowSecrets, aad: string): string => {
    const known = sealedOf.get(secrets);
    if (known !== undefined && known.aad === aad) return known.sealed;
    const sealed = keys.seal(JSON.stringify(compactSecrets(secrets)), aad);
    sealedOf.set(secrets, { aad, sealed });
    return sealed;
  };

  return {
    encode(flow) {
      const aad = flowId(flow.deviceId, flow.rid);
      const c = flow.createdAt;
      const stored: Compact = {
        m: flow.mode === 'device' ? 'd' : 'a',
        t: flow.state,
        s: flow.scope,
        c,
        e: flow.expiresAt - c,
        i: flow.interval,
        x: '',
      };
      if (flow.nextPollAt !== undefined) stored.n = flow.nextPollAt - c;
      if (flow.failures !== undefined) stored.f = flow.failures;
      if (flow.verificationUri !== undefined) stored.u = flow.verificationUri;
      if (flow.jwk !== undefined) stored.jwk = flow.jwk;
      if (flow.device !== undefined) stored.d = flow.device;
      if (flow.network !== undefined) stored.ip = flow.network;
      if (flow.approvedAt !== undefined) stored.a = flow.approvedAt - c;
      if (flow.error !== undefined) stored.er = [flow.error.code, flow.error.description];
      if (flow.deliveredAt !== undefined) stored.dl = flow.deliveredAt - c;
      stored.x = seal(flow.secrets, aad);
      return JSON.stringify(stored);
    },

    decode(deviceId, rid, text) {
      const aad = flowId(deviceId, rid);
      const parsed = JSON.parse(text) as Compact | Legacy;
      if ('mode' in parsed) {
        const { s, ...rest } = parsed;
        const secrets = fullSecrets(JSON.parse(keys.open(s, aad)) as FlowSecrets | CompactSecrets);
        sealedOf.set(secrets, { aad, sealed: s });
        return { deviceId, rid, ...rest, secrets };
      }
      const p = parsed;
      const c = p.c;
      const secrets = fullSecrets(JSON.parse(keys.open(p.x, aad)) as CompactSecrets);
      sealedOf.set(secrets, { aad, sealed: p.x });
      const flow: Flow = {
        deviceId,
        rid,
        mode: p.m === 'd' ? 'device' : 'authorization_code',
        state: p.t,
        scope: p.s,
        createdAt: c,
        expiresAt: c + p.e,
        interval: p.i,
        secrets,
      };
      if (p.n !== undefined) flow.nextPollAt = c + p.n;
      if (p.f !== undefined) flow.failures = p.f;
      if (p.u !== undefined) flow.verificationUri = p.u;
      if (p.jwk !== undefined) flow.jwk = p.jwk;
      if (p.d !== undefined) flow.device = p.d;
      if (p.ip !== undefined) flow.network = p.ip;
      if (p.a !== undefined) flow.approvedAt = c + p.a;
      if (p.er !== undefined) flow.error = { code: p.er[0], description: p.er[1] };
      if (p.dl !== undefined) flow.deliveredAt = c + p.dl;
      return flow;
    },
  };
}

function compactSecrets(s: FlowSecrets): CompactSecrets {
  const out: CompactSecrets = { u: s.userCode };
  if (s.verificationUriComplete !== undefined) out.vc = s.verificationUriComplete;
  if (s.deviceCode !== undefined) out.dc = s.deviceCode;
  if (s.codeVerifier !== undefined) out.cv = s.codeVerifier;
  if (s.nonce !== undefined) out.no = s.nonce;
  if (s.token !== undefined) out.tk = s.token;
  return out;
}

/** Sealed secrets in either form (short names, or the first form's full names). */
function fullSecrets(s: FlowSecrets | CompactSecrets): FlowSecrets {
  if ('userCode' in s) return s;
  const out: FlowSecrets = { userCode: s.u };
  if (s.vc !== undefined) out.verificationUriComplete = s.vc;
  if (s.dc !== undefined) out.deviceCode = s.dc;
  if (s.cv !== undefined) out.codeVerifier = s.cv;
  if (s.no !== undefined) out.nonce = s.no;
  if (s.tk !== undefined) out.token = s.tk;
  return out;
}

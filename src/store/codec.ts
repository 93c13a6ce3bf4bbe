/**
 * How a flow is written to a store: public fields as compact JSON (device id and rid live in the key), secrets sealed
 * with AES-256-GCM bound to the flow id. A Redis dump shows no token, device code, PKCE verifier or user code.
 *
 * The stored form is small on purpose (Redis memory per pending flow is a measured budget): one- or two-letter
 * names, times after `createdAt` stored as offsets from it, absent fields omitted, and the sealed secrets under `x`.
 * What is read back is validated (both the public JSON and the opened secrets, per mode): a body that does not
 * match is an error, never a half-typed flow.
 *
 * Sealing is the expensive part of encoding, so a secrets object that was sealed (or opened) for a flow before is
 * not sealed again: flows are never mutated, and the engine passes unchanged secrets on as the same object. Only the
 * sealed form is remembered (in a WeakMap keyed by the secrets object), never the plaintext.
 */
import { z } from 'zod';
import type { Keys } from '../core/crypto.ts';
import { OAUTH_ERROR_CODES } from '../core/errors.ts';
import type {
  BridgeSecrets,
  Flow,
  FlowBase,
  FlowError,
  FlowSecrets,
  RelaySecrets,
  TokenSet,
} from '../core/flow.ts';
import { flowId } from '../core/flow.ts';
import { authorizeRequest } from '../core/protocol.ts';
import type { FlowCodec } from './types.ts';

const time = z.number().int();
const offset = z.number().int().nonnegative();

/** The stored public part of both modes. Times other than `c` are milliseconds after `c` (createdAt). */
const common = {
  /** state */
  t: z.enum(['pending', 'authorized', 'denied', 'expired', 'cancelled', 'failed', 'acked']),
  /** scope */
  s: z.string(),
  /** createdAt (ms since the epoch) */
  c: time,
  /** expiresAt − createdAt */
  e: offset,
  /** interval (s) */
  i: z.number().int().nonnegative(),
  /** the sealed secrets */
  x: z.string().min(1),
  /** the device's public key, as the device sent it */
  jwk: authorizeRequest.shape.jwk,
  /** device */
  d: authorizeRequest.shape.device,
  /** network */
  ip: z.string().optional(),
  /** error: [code, description] */
  er: z.tuple([z.enum(OAUTH_ERROR_CODES), z.string()]).optional(),
  /** deliveredAt − createdAt */
  dl: offset.optional(),
  /** tokenAt − createdAt */
  ta: offset.optional(),
  /** refreshable */
  rf: z.literal(1).optional(),
};

const relayBody = z.strictObject({
  /** mode `d`: device (relay) */
  m: z.literal('d'),
  ...common,
  /** nextPollAt − createdAt */
  n: offset.optional(),
  /** failures */
  f: z.number().int().positive().optional(),
  /** pollSentAt − createdAt */
  ps: offset.optional(),
  /** lostPoll */
  lp: z.literal(1).optional(),
  /** verificationUri */
  u: z.string(),
});

const bridgeBody = z.strictObject({
  /** mode `a`: authorization_code (bridge) */
  m: z.literal('a'),
  ...common,
  /** approvedAt − createdAt */
  a: offset.optional(),
});

/** What {@link flowCodec} writes: the union of both modes' stored fields (the schemas above say which go together). */
interface CompactBody {
  m: 'd' | 'a';
  t: Flow['state'];
  s: string;
  c: number;
  e: number;
  i: number;
  x: string;
  n?: number;
  f?: number;
  ps?: number;
  lp?: 1;
  u?: string;
  jwk?: Flow['jwk'];
  d?: Flow['device'];
  ip?: string;
  a?: number;
  er?: [FlowError['code'], string];
  dl?: number;
  ta?: number;
  rf?: 1;
}

const storedBody = z.discriminatedUnion('m', [relayBody, bridgeBody]);
type StoredBody = z.infer<typeof storedBody>;

const tokenSet = z.strictObject({
  access_token: z.string(),
  token_type: z.string(),
  expires_in: z.number().optional(),
  scope: z.string().optional(),
  id_token: z.string().optional(),
  refresh_token: z.string().optional(),
});

/** The sealed plaintext of a relay flow: short names for the secrets. */
const relaySealed = z.strictObject({
  u: z.string(),
  vc: z.string().optional(),
  dc: z.string().optional(),
  tk: tokenSet.optional(),
});

/** The sealed plaintext of a bridge flow. */
const bridgeSealed = z.strictObject({
  u: z.string(),
  cv: z.string().optional(),
  no: z.string().optional(),
  tk: tokenSet.optional(),
});

/** A stored body that cannot be read as a flow: refused, whatever part of it is wrong. */
export class MalformedFlowError extends Error {
  constructor(id: string, what: string) {
    super(`stored flow ${id} is malformed: ${what}`);
    this.name = 'MalformedFlowError';
  }
}

/** The codec every store uses: compact JSON, sealed secrets, validation on the way back. */
export function flowCodec(keys: Keys): FlowCodec {
  /** The sealed form of a secrets object, and the flow it was sealed for (the AAD). */
  const sealedOf = new WeakMap<FlowSecrets, { aad: string; sealed: string }>();

  const seal = (flow: Flow, aad: string): string => {
    const known = sealedOf.get(flow.secrets);
    if (known !== undefined && known.aad === aad) return known.sealed;
    const sealed = keys.seal(JSON.stringify(compactSecrets(flow)), aad);
    sealedOf.set(flow.secrets, { aad, sealed });
    return sealed;
  };

  /** Opens and validates the sealed secrets with the schema of the body's mode. */
  const open = <S>(schema: z.ZodType<S>, sealed: string, aad: string): S => {
    let plaintext: string;
    try {
      plaintext = keys.open(sealed, aad);
    } catch {
      // another DEVICEGATE_SECRET, or a tampered record: either way this record cannot be used
      throw new MalformedFlowError(aad, 'secrets do not open with this secret');
    }
    const result = schema.safeParse(parseJson(plaintext, aad, 'secrets'));
    if (!result.success) throw new MalformedFlowError(aad, `secrets: ${result.error.issues[0]?.message}`);
    return result.data;
  };

  return {
    encode(flow) {
      const aad = flowId(flow.deviceId, flow.rid);
      const c = flow.createdAt;
      // The key order is the stored byte layout: `x` stays in its place after `i` when it is filled in.
      const stored: CompactBody = {
        m: flow.mode === 'device' ? 'd' : 'a',
        t: flow.state,
        s: flow.scope,
        c,
        e: flow.expiresAt - c,
        i: flow.interval,
        x: '',
      };
      if (flow.mode === 'device') {
        if (flow.nextPollAt !== undefined) stored.n = flow.nextPollAt - c;
        if (flow.failures !== undefined) stored.f = flow.failures;
        if (flow.pollSentAt !== undefined) stored.ps = flow.pollSentAt - c;
        if (flow.lostPoll === true) stored.lp = 1;
        stored.u = flow.verificationUri;
      }
      if (flow.jwk !== undefined) stored.jwk = flow.jwk;
      if (flow.device !== undefined) stored.d = flow.device;
      if (flow.network !== undefined) stored.ip = flow.network;
      if (flow.mode === 'authorization_code' && flow.approvedAt !== undefined) stored.a = flow.approvedAt - c;
      if (flow.error !== undefined) stored.er = [flow.error.code, flow.error.description];
      if (flow.deliveredAt !== undefined) stored.dl = flow.deliveredAt - c;
      if (flow.tokenAt !== undefined) stored.ta = flow.tokenAt - c;
      if (flow.refreshable === true) stored.rf = 1;
      stored.x = seal(flow, aad);
      return JSON.stringify(stored);
    },

    decode(deviceId, rid, text) {
      const aad = flowId(deviceId, rid);
      const result = storedBody.safeParse(parseJson(text, aad, 'body'));
      if (!result.success) {
        const issue = result.error.issues[0];
        throw new MalformedFlowError(aad, `${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
      }
      const p = result.data;
      let flow: Flow;
      if (p.m === 'd') {
        const secrets = relaySecrets(open(relaySealed, p.x, aad));
        flow = { deviceId, rid, mode: 'device', ...publicPart(p), verificationUri: p.u, secrets };
        if (p.n !== undefined) flow.nextPollAt = p.c + p.n;
        if (p.f !== undefined) flow.failures = p.f;
        if (p.ps !== undefined) flow.pollSentAt = p.c + p.ps;
        if (p.lp !== undefined) flow.lostPoll = true;
      } else {
        const secrets = bridgeSecrets(open(bridgeSealed, p.x, aad));
        flow = { deviceId, rid, mode: 'authorization_code', ...publicPart(p), secrets };
        if (p.a !== undefined) flow.approvedAt = p.c + p.a;
      }
      sealedOf.set(flow.secrets, { aad, sealed: p.x });
      return flow;
    },
  };
}

function parseJson(text: string, id: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MalformedFlowError(id, `${what} is not JSON`);
  }
}

type CommonFields = Omit<FlowBase, 'deviceId' | 'rid'>;

/** The fields both modes store, absent ones left out. */
function publicPart(p: StoredBody): CommonFields {
  const c = p.c;
  const out: CommonFields = { state: p.t, scope: p.s, createdAt: c, expiresAt: c + p.e, interval: p.i };
  if (p.jwk !== undefined) out.jwk = p.jwk;
  if (p.d !== undefined) out.device = p.d;
  if (p.ip !== undefined) out.network = p.ip;
  if (p.er !== undefined) out.error = { code: p.er[0], description: p.er[1] };
  if (p.dl !== undefined) out.deliveredAt = c + p.dl;
  if (p.ta !== undefined) out.tokenAt = c + p.ta;
  if (p.rf === 1) out.refreshable = true;
  return out;
}

/** What {@link compactSecrets} writes: the union of both modes' sealed fields. */
interface SealedPlain {
  u: string;
  vc?: string;
  dc?: string;
  cv?: string;
  no?: string;
  tk?: TokenSet;
}

/** The sealed plaintext: short names, in a fixed order. */
function compactSecrets(flow: Flow): SealedPlain {
  const out: SealedPlain = { u: flow.secrets.userCode };
  if (flow.mode === 'device') {
    if (flow.secrets.verificationUriComplete !== undefined) out.vc = flow.secrets.verificationUriComplete;
    if (flow.secrets.deviceCode !== undefined) out.dc = flow.secrets.deviceCode;
  } else {
    if (flow.secrets.codeVerifier !== undefined) out.cv = flow.secrets.codeVerifier;
    if (flow.secrets.nonce !== undefined) out.no = flow.secrets.nonce;
  }
  if (flow.secrets.token !== undefined) out.tk = flow.secrets.token;
  return out;
}

function relaySecrets(s: z.infer<typeof relaySealed>): RelaySecrets {
  const out: RelaySecrets = { userCode: s.u };
  if (s.vc !== undefined) out.verificationUriComplete = s.vc;
  if (s.dc !== undefined) out.deviceCode = s.dc;
  if (s.tk !== undefined) out.token = withoutUndefined(s.tk);
  return out;
}

function bridgeSecrets(s: z.infer<typeof bridgeSealed>): BridgeSecrets {
  const out: BridgeSecrets = { userCode: s.u };
  if (s.cv !== undefined) out.codeVerifier = s.cv;
  if (s.no !== undefined) out.nonce = s.no;
  if (s.tk !== undefined) out.token = withoutUndefined(s.tk);
  return out;
}

/** A parsed token set as a `TokenSet` (JSON has no `undefined` members; the type says so explicitly). */
function withoutUndefined(t: z.infer<typeof tokenSet>): TokenSet {
  return {
    access_token: t.access_token,
    token_type: t.token_type,
    ...(t.expires_in !== undefined && { expires_in: t.expires_in }),
    ...(t.scope !== undefined && { scope: t.scope }),
    ...(t.id_token !== undefined && { id_token: t.id_token }),
    ...(t.refresh_token !== undefined && { refresh_token: t.refresh_token }),
  };
}

/**
 * The device contract (README.md, "The device contract"; docs/architecture.md): request payloads (validated with zod,
 * unknown fields refused) and the replies the gateway publishes on `{prefix}/{deviceId}/res`.
 */
import { z } from 'zod';
import { invalidRequest, OAUTH_ERROR_CODES, OAuthError } from './errors.ts';

/** Device ids and request ids: `^[A-Za-z0-9._-]{1,64}$`. */
export const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** Request payloads larger than this are refused before parsing. */
export const MAX_PAYLOAD_BYTES = 4096;

export const DEVICE_ACTIONS = ['authorize', 'status', 'ack', 'cancel', 'refresh'] as const;
export type DeviceAction = (typeof DEVICE_ACTIONS)[number];
export function isDeviceAction(value: string): value is DeviceAction {
  return (DEVICE_ACTIONS as readonly string[]).includes(value);
}

const rid = z.string().regex(ID_PATTERN, 'rid must match ^[A-Za-z0-9._-]{1,64}$');
/** Printable text without control characters, for what a device says about itself. */
const label = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[^\p{Cc}\p{Cf}\p{Co}\p{Cs}]+$/u, 'must be printable text');
/** Space-separated scope tokens (RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`). */
const scope = z
  .string()
  .max(512)
  .regex(
    /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/,
    'scope must be space-separated scope tokens',
  );

/** True when `value` is a `scope` the gateway accepts in `req/authorize` (tokens per RFC 6749 §3.3, ≤ 512 chars). */
export function isScope(value: string): boolean {
  return scope.safeParse(value).success;
}

/** True when `value` is a device label (`device.name` / `model` / `firmware`): 1–64 printable characters. */
export function isDeviceLabel(value: string): boolean {
  return label.safeParse(value).success;
}

/** The URL schemes a device (and the gateway as a client) may reach an MQTT broker with. */
export const MQTT_URL_PROTOCOLS = ['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ws:', 'wss:'] as const;

/** True when `url` is a URL whose scheme is one of {@link MQTT_URL_PROTOCOLS}. */
export function isMqttUrl(url: string): boolean {
  return URL.canParse(url) && (MQTT_URL_PROTOCOLS as readonly string[]).includes(new URL(url).protocol);
}

/**
 * A member of a private key (RFC 7518 §6.2.2, §6.3.2, §6.4.1): refused by name, so a device that sends its whole key
 * pair learns why. The key itself is judged in `src/core/device-key.ts`.
 */
const privateMember = z
  .never({ error: 'a private key member: send only the public key, never d, p, q, dp, dq, qi, oth or k' })
  .optional();

/**
 * A public key the token is encrypted to (RFC 7517): its shape. Whether the gateway will encrypt to it (size,
 * exponent, curve, low-order points, `alg`) is `src/core/device-key.ts`, applied by `src/service/jwe.ts`; stored
 * flows and grants are read back with this schema, so a key an older gateway accepted can still be read and refused.
 */
const publicJwk = z
  .object({
    kty: z.enum(['EC', 'OKP', 'RSA']),
    crv: z.enum(['P-256', 'P-384', 'P-521', 'X25519']).optional(),
    x: z.string().max(256).optional(),
    y: z.string().max(256).optional(),
    // long enough for a modulus just over RSA_MAX_BITS, so its refusal names the size rule
    n: z.string().max(2048).optional(),
    e: z.string().max(16).optional(),
    kid: z.string().max(128).optional(),
    alg: z.string().max(32).optional(),
    use: z.literal('enc', { error: 'use must be "enc" (the key is encrypted to) or absent' }).optional(),
    d: privateMember,
    p: privateMember,
    q: privateMember,
    dp: privateMember,
    dq: privateMember,
    qi: privateMember,
    oth: privateMember,
    k: privateMember,
  })
  .strict();

export const authorizeRequest = z
  .object({
    rid,
    scope: scope.optional(),
    jwk: publicJwk.optional(),
    /** What the device says about itself; shown to the person on the confirm page (bridge mode). */
    device: z
      .object({ name: label.optional(), model: label.optional(), firmware: label.optional() })
      .strict()
      .optional(),
  })
  .strict();
export type AuthorizeRequest = z.infer<typeof authorizeRequest>;

export const ridRequest = z.object({ rid }).strict();
export type RidRequest = z.infer<typeof ridRequest>;

export type DeviceRequest =
  | { action: 'authorize'; body: AuthorizeRequest }
  | { action: 'status' | 'ack' | 'cancel' | 'refresh'; body: RidRequest };

/**
 * Parses a request payload: size cap before anything else, then JSON, then the schema. Throws an
 * {@link OAuthError} `invalid_request` whose text says what is wrong; `rid` is recovered when it can be, so the
 * error reply can name the request it answers.
 */
export function parseDeviceRequest(action: DeviceAction, payload: Uint8Array): DeviceRequest {
  if (payload.byteLength > MAX_PAYLOAD_BYTES) {
    throw invalidRequest(`payload is ${payload.byteLength} bytes; the limit is ${MAX_PAYLOAD_BYTES}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    throw invalidRequest('payload is not UTF-8 JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw invalidRequest('payload must be a JSON object');
  }
  const schema = action === 'authorize' ? authorizeRequest : ridRequest;
  const result = schema.safeParse(json);
  if (!result.success) {
    const first = result.error.issues[0];
    const where = first && first.path.length > 0 ? `${first.path.join('.')}: ` : '';
    const what =
      first?.code === 'unrecognized_keys'
        ? `unknown field(s) ${first.keys.join(', ')}`
        : (first?.message ?? 'invalid');
    throw invalidRequest(`${where}${what}`);
  }
  return { action, body: result.data } as DeviceRequest;
}

/** The `rid` of a payload that failed validation, if it had a well-formed one. */
export function salvageRid(payload: Uint8Array): string | undefined {
  if (payload.byteLength > MAX_PAYLOAD_BYTES) return undefined;
  try {
    const json: unknown = JSON.parse(Buffer.from(payload).toString('utf8'));
    if (typeof json === 'object' && json !== null && 'rid' in json) {
      const r = (json as { rid: unknown }).rid;
      if (typeof r === 'string' && ID_PATTERN.test(r)) return r;
    }
  } catch {
    // not JSON: no rid to recover
  }
  return undefined;
}

/*
 * The replies, as schemas so that docs/asyncapi.yaml is generated from them (scripts/asyncapi.ts). `.loose()`: a
 * device must ignore fields it does not know, so later versions of `v: 1` may add some.
 */
const replyBase = {
  v: z.literal(1).describe('payload version'),
  rid: rid.describe('the request this reply answers'),
};

export const pendingReplySchema = z
  .object({
    ...replyBase,
    status: z.literal('pending'),
    user_code: z.string().describe('the code the person types; show it as it is, dashes included'),
    verification_uri: z.string().describe('where the person enters the code'),
    verification_uri_complete: z
      .string()
      .exactOptional()
      .describe('the same page with the code filled in (bridge mode: with a proof `k`), for a QR code'),
    expires_in: z.number().int().describe('seconds until the code expires'),
  })
  .loose()
  .describe('The flow waits for the person: show the user code and the verification URI.');
export type PendingReply = z.infer<typeof pendingReplySchema>;

export const authorizedReplySchema = z
  .object({
    ...replyBase,
    status: z.literal('authorized'),
    access_token: z.string().exactOptional(),
    token_type: z.string().exactOptional(),
    expires_in: z.number().int().exactOptional().describe('seconds the access token lives'),
    scope: z.string().exactOptional(),
    id_token: z.string().exactOptional(),
    jwe: z
      .string()
      .exactOptional()
      .describe(
        'present instead of the token fields when the device sent a `jwk`: a compact JWE to that key',
      ),
  })
  .loose()
  .describe('The token (a secret: keep it, never log it), then send `req/ack`.');
export type AuthorizedReply = z.infer<typeof authorizedReplySchema>;

export const errorReplySchema = z
  .object({
    v: replyBase.v,
    rid: replyBase.rid.exactOptional(),
    status: z.literal('error'),
    error: z.enum(OAUTH_ERROR_CODES).describe('RFC 6749 §5.2 / RFC 8628 §3.5 code'),
    error_description: z.string().describe('safe to show'),
    retry_after: z
      .number()
      .int()
      .exactOptional()
      .describe('seconds to wait before asking again (`slow_down`, `temporarily_unavailable`)'),
  })
  .loose()
  .describe('The request failed or the flow ended without a token.');
export type ErrorReply = z.infer<typeof errorReplySchema>;

export type DeviceReply = PendingReply | AuthorizedReply | ErrorReply;

export function errorReply(err: OAuthError, rid?: string): ErrorReply {
  return {
    v: 1,
    ...(rid !== undefined && { rid }),
    status: 'error',
    error: err.code,
    error_description: err.description,
    ...(err.retryAfter !== undefined && { retry_after: err.retryAfter }),
  };
}

export { OAuthError };

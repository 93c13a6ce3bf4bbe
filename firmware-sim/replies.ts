/**
 * The device's side of the reply contract (docs/architecture.md, "Device contract"): parsing what arrives on
 * `{prefix}/{deviceId}/res`, and fresh request ids.
 */
import { randomBytes } from 'node:crypto';
import type { DeviceReply } from '../src/core/protocol.ts';

export type ReplyStatus = DeviceReply['status'];

/**
 * A reply as the device sees it. An `authorized` reply that arrived as JWE and was decrypted carries the token
 * fields, no `jwe`, and `encrypted: true`.
 */
export type SimReply = DeviceReply & { readonly encrypted?: true };

/** A fresh request id matching `ID_PATTERN` of src/core/protocol.ts. */
export function randomRid(): string {
  return `r-${randomBytes(9).toString('base64url')}`;
}

/** Parses a `res` payload; `undefined` when it is not a reply of the contract. */
export function parseReply(payload: Uint8Array): DeviceReply | undefined {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const r = json as Record<string, unknown>;
  if (r['rid'] !== undefined && typeof r['rid'] !== 'string') return undefined;
  // the fields a device acts on are checked; the gateway is trusted for the rest of the shape
  switch (r['status']) {
    case 'pending':
      return typeof r['user_code'] === 'string' && typeof r['verification_uri'] === 'string'
        ? (json as DeviceReply)
        : undefined;
    case 'authorized':
      return typeof r['rid'] === 'string' ? (json as DeviceReply) : undefined;
    case 'error':
      return typeof r['error'] === 'string' ? (json as DeviceReply) : undefined;
    default:
      return undefined;
  }
}

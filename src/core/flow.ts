/** The flow record: what the gateway knows about one device authorization request. */
import type { OAuthErrorCode } from './errors.ts';

/** `device`: relay to the upstream's RFC 8628 endpoint; `authorization_code`: bridge to code + PKCE. */
export type UpstreamMode = 'device' | 'authorization_code';

/**
 * `pending` until a result; then exactly one of the result states; then `acked` once the device confirmed receipt.
 * A flow never moves back: see {@link stateRank}.
 */
export type FlowState = 'pending' | 'authorized' | 'denied' | 'expired' | 'cancelled' | 'failed' | 'acked';

/** 0 = live, 1 = finished with a result, 2 = acknowledged. Stores refuse writes that lower the rank. */
export function stateRank(state: FlowState): 0 | 1 | 2 {
  return state === 'pending' ? 0 : state === 'acked' ? 2 : 1;
}

/** Token endpoint response members the gateway forwards (RFC 6749 §5.1 names). */
export interface TokenSet {
  access_token: string;
  token_type: string;
  expires_in?: number;
  scope?: string;
  id_token?: string;
  refresh_token?: string;
}

/** Values that are secret: sealed (AES-256-GCM) whenever the flow is stored. */
export interface FlowSecrets {
  /** The user code as shown to people (`XXXX-XXXX` in bridge mode, the upstream's in relay mode). */
  userCode: string;
  /** Relay mode: the upstream's `verification_uri_complete` (it carries the user code, so it is sealed too). */
  verificationUriComplete?: string;
  /** Relay mode: the upstream's device_code. Never leaves the gateway. */
  deviceCode?: string;
  /** Bridge mode: PKCE code_verifier for the upstream authorization request. */
  codeVerifier?: string;
  /** Bridge mode: OIDC nonce sent with the upstream authorization request. */
  nonce?: string;
  /** The result, kept until the device acks or the flow's lifetime ends. */
  token?: TokenSet;
}

/** What the device reported about itself in `req/authorize` (shown on the confirm page). */
export interface DeviceInfo {
  name?: string | undefined;
  model?: string | undefined;
  firmware?: string | undefined;
}

export interface PublicJwk {
  kty: 'EC' | 'OKP' | 'RSA';
  crv?: string | undefined;
  x?: string | undefined;
  y?: string | undefined;
  n?: string | undefined;
  e?: string | undefined;
  kid?: string | undefined;
  alg?: string | undefined;
  use?: 'enc' | undefined;
}

export interface Flow {
  deviceId: string;
  rid: string;
  mode: UpstreamMode;
  state: FlowState;
  scope: string;
  /** ms since the epoch */
  createdAt: number;
  /** ms since the epoch; the flow is valid up to and including this instant (RFC 8628 §3.2 `expires_in`). */
  expiresAt: number;
  /** Relay mode: seconds between polls, including every `slow_down` increase (RFC 8628 §3.5). */
  interval: number;
  /** Relay mode: when the next upstream poll is due (ms). */
  nextPollAt?: number;
  /** Relay mode: consecutive upstream connection failures (backoff doubles per failure). */
  failures?: number;
  /** Relay mode: the upstream's verification URI (bridge mode derives it from the public URL). */
  verificationUri?: string;
  /** The device's public key: the token is sent as JWE to it. */
  jwk?: PublicJwk;
  device?: DeviceInfo;
  /** Network address the request came from, when the transport knows it. */
  network?: string;
  /** Bridge mode: when the person approved on the page; the user code is dead from then on. */
  approvedAt?: number;
  /** The error a finished flow reports (denied, expired, cancelled, failed). */
  error?: { code: OAuthErrorCode; description: string };
  /** When the result was handed to the broker (QoS 1 acknowledged). */
  deliveredAt?: number;
  secrets: FlowSecrets;
}

/** Identifies a flow: one device's request id. */
export function flowId(deviceId: string, rid: string): string {
  return `${deviceId}/${rid}`;
}

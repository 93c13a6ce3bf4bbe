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

/** Secrets of both modes: sealed (AES-256-GCM) whenever the flow is stored. */
interface CommonSecrets {
  /** The user code as shown to people (`XXXX-XXXX` in bridge mode, the upstream's in relay mode). */
  userCode: string;
  /** The result, kept until the device acks or the flow's lifetime ends. */
  token?: TokenSet;
}

/** Relay mode's secrets. The upstream's values are dropped once the flow is finished. */
export interface RelaySecrets extends CommonSecrets {
  /** The upstream's `verification_uri_complete` (it carries the user code, so it is sealed too). */
  verificationUriComplete?: string;
  /** The upstream's device_code. Never leaves the gateway. */
  deviceCode?: string;
}

/** Bridge mode's secrets. Set by the approval, dropped once the flow is finished. */
export interface BridgeSecrets extends CommonSecrets {
  /** PKCE code_verifier of the upstream authorization request (RFC 7636). */
  codeVerifier?: string;
  /** OIDC nonce sent with the upstream authorization request. */
  nonce?: string;
}

/** The secrets of either mode. */
export type FlowSecrets = RelaySecrets | BridgeSecrets;

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

/** The error a finished, unsuccessful flow reports (RFC 6749 §5.2 / RFC 8628 §3.5 code and a safe text). */
export interface FlowError {
  code: OAuthErrorCode;
  description: string;
}

/** What both modes record. */
export interface FlowBase {
  deviceId: string;
  rid: string;
  state: FlowState;
  scope: string;
  /** ms since the epoch */
  createdAt: number;
  /** ms since the epoch; the flow is valid up to and including this instant (RFC 8628 §3.2 `expires_in`). */
  expiresAt: number;
  /**
   * Seconds between polls, including every `slow_down` increase (RFC 8628 §3.5). Relay mode polls at it; bridge mode
   * records the configured interval (the stored form carries it in both modes).
   */
  interval: number;
  /** The device's public key: the token is sent as JWE to it. */
  jwk?: PublicJwk;
  device?: DeviceInfo;
  /** Network address the request came from, when the transport knows it. */
  network?: string;
  /** The error a finished flow reports (denied, expired, cancelled, failed). */
  error?: FlowError;
  /** When the result was handed to the broker (QoS 1 acknowledged). */
  deliveredAt?: number;
  /** When the gateway received the token (ms): the token's `expires_in` counts from here. */
  tokenAt?: number;
  /** A grant (refresh token) was kept with the token: a device whose token ran out can use `req/refresh`. */
  refreshable?: true;
}

/** Relay mode (`device`): the upstream's RFC 8628 endpoint issued the codes; the scheduler polls its token endpoint. */
export interface RelayFlow extends FlowBase {
  mode: 'device';
  /** The upstream's verification URI, where the person goes. */
  verificationUri: string;
  /** When the next upstream poll is due (ms); absent once the flow is finished. */
  nextPollAt?: number;
  /** Consecutive upstream connection failures (backoff doubles per failure). */
  failures?: number;
  /**
   * When a poll of the device code was sent whose answer is not recorded yet (ms): set under the lease before each
   * poll, cleared by its answer. Still set at the next poll means that answer was lost — the holder stopped, or its
   * write failed — and the device code may have been redeemed by it.
   */
  pollSentAt?: number;
  /** A poll's answer was lost (see `pollSentAt`): an `invalid_grant` later may mean the approval was used up. */
  lostPoll?: true;
  secrets: RelaySecrets;
}

/** Bridge mode (`authorization_code`): the gateway issued the user code; the person approves on its `/device` page. */
export interface BridgeFlow extends FlowBase {
  mode: 'authorization_code';
  /** When the person approved on the page; the user code is dead from then on. */
  approvedAt?: number;
  secrets: BridgeSecrets;
}

/** One device authorization request, discriminated on `mode` (the gateway runs in one mode at a time). */
export type Flow = RelayFlow | BridgeFlow;

/** Identifies a flow: one device's request id. */
export function flowId(deviceId: string, rid: string): string {
  return `${deviceId}/${rid}`;
}

/**
 * The embedded broker's access rules, as pure decisions (no broker, no I/O): what a device may CONNECT with, publish,
 * subscribe to, and be forwarded. The broker's hooks in `embedded.ts` only translate these into aedes' callbacks.
 * Every rule fails closed: anything not allowed here is refused. The same rules are what an external broker's ACL
 * must enforce (docs/security.md, deploy/mosquitto).
 *
 * - connect: username = client id = device id (`ID_PATTERN`), password = the fleet-key HMAC of the id (`hmac`), or
 *   any valid id (`none`, demos only); or (`cert`) the device id is the subject CN of the client certificate the TLS
 *   listener verified, the client id must equal it, a username (if any) too, and no password is looked at; a Will
 *   the device could not publish itself is refused.
 * - publish: only `{prefix}/{ownId}/req/{one level}`, never retained, never `$…`, never a wildcard.
 * - subscribe and forward: only exactly `{prefix}/{ownId}/res`.
 */
import { checkDevicePassword } from '../core/crypto.ts';
import { ID_PATTERN } from '../core/protocol.ts';
import type { Topics } from './topics.ts';

export type ConnectRefusal =
  'bad_username' | 'bad_password' | 'client_id_mismatch' | 'will_not_allowed' | 'no_certificate';
export type PublishRefusal = 'reserved' | 'wildcard' | 'retain' | 'not_own_request' | 'qos2';
/** Why a subscription or a delivery is refused: the topic is not the device's own `res`. */
export type ResponseRefusal = 'not_own_response';

/** An access decision: allowed, or refused with a reason (for metrics and logs, never sent to the device). */
export type Decision<Reason extends string> =
  { readonly allow: true } | { readonly allow: false; readonly reason: Reason };

const ALLOW = { allow: true } as const;
const deny = <Reason extends string>(reason: Reason): Decision<Reason> => ({ allow: false, reason });

/**
 * CONNACK return codes (MQTT 3.1.1 §3.2.2.3) a refused CONNECT is answered with (aedes passes them through from
 * `authenticate`): 4 bad user name or password, 5 not authorized.
 */
export const CONNACK_RETURN_CODE: Readonly<Record<ConnectRefusal, 4 | 5>> = {
  bad_username: 4,
  bad_password: 4,
  client_id_mismatch: 5,
  will_not_allowed: 5,
  no_certificate: 5,
};

/** What the rules depend on: the topic layout and how device passwords are checked. */
export interface AclPolicy {
  readonly topics: Topics;
  /**
   * `hmac`: password = devicePassword(deviceKey, id). `cert`: the id is the verified client certificate's subject CN.
   * `none`: any valid id, no password (demos only).
   */
  readonly deviceAuth: 'hmac' | 'cert' | 'none';
  /** the fleet key device passwords derive from */
  readonly deviceKey: string;
  /** during a fleet-key rotation, the key being rotated out: its passwords are still accepted */
  readonly previousDeviceKey?: string;
}

/** A connect decision; an accepted one says whether the password came from the previous fleet key. */
export type ConnectDecision =
  | { readonly allow: true; readonly previousKey?: true }
  | { readonly allow: false; readonly reason: ConnectRefusal };

/** The parts of a CONNECT the rules look at. */
export interface ConnectAttempt {
  readonly clientId: string;
  readonly username: string | undefined;
  readonly password: Buffer | undefined;
  /**
   * the subject CN of the client certificate the TLS handshake verified against the configured CA; undefined without
   * TLS, without a certificate, or with a CN that is not exactly one string
   */
  readonly certificateId: string | undefined;
  /** the CONNECT's Will, if it has one */
  readonly will: { readonly topic: string; readonly retain?: boolean } | undefined;
}

/**
 * Whether a CONNECT is accepted. Checks, in order: the username is a valid device id, the client id equals it, the
 * password matches (in `hmac` mode), and a Will, if any, is a publish the device would be allowed to make itself —
 * aedes would authorize a Will only when about to publish it, so it is refused up front and no session exists for it.
 */
export function decideConnect(policy: AclPolicy, attempt: ConnectAttempt): ConnectDecision {
  const identity =
    policy.deviceAuth === 'cert' ? certificateIdentity(attempt) : passwordIdentity(policy, attempt);
  if ('allow' in identity) return identity;
  if (attempt.will !== undefined && !decidePublish(policy, identity.id, attempt.will).allow) {
    return deny('will_not_allowed');
  }
  return identity.key === 'previous' ? { allow: true, previousKey: true } : ALLOW;
}

type Identity = { readonly id: string; readonly key: 'current' | 'previous' };

/** `hmac` and `none`: the username is the device id, the client id equals it, and (`hmac`) the password matches. */
function passwordIdentity(policy: AclPolicy, attempt: ConnectAttempt): Identity | Decision<ConnectRefusal> {
  const { username } = attempt;
  if (username === undefined || !ID_PATTERN.test(username)) return deny('bad_username');
  if (attempt.clientId !== username) return deny('client_id_mismatch');
  const key = policy.deviceAuth === 'hmac' ? passwordKey(policy, username, attempt.password) : 'current';
  if (key === undefined) return deny('bad_password');
  return { id: username, key };
}

/** Which fleet key the password derives from: the current one, the one being rotated out, or neither. */
function passwordKey(
  policy: AclPolicy,
  deviceId: string,
  password: Buffer | undefined,
): 'current' | 'previous' | undefined {
  if (checkDevicePassword(policy.deviceKey, deviceId, password)) return 'current';
  const previous = policy.previousDeviceKey;
  return previous !== undefined && checkDevicePassword(previous, deviceId, password) ? 'previous' : undefined;
}

/**
 * `cert`: the verified certificate names the device; the client id must be that name (so one device's certificate
 * never opens another's session), and a username, which a client may send anyway, must not say otherwise.
 */
function certificateIdentity(attempt: ConnectAttempt): Identity | Decision<ConnectRefusal> {
  const id = attempt.certificateId;
  if (id === undefined || !ID_PATTERN.test(id)) return deny('no_certificate');
  if (attempt.clientId !== id) return deny('client_id_mismatch');
  if (attempt.username !== undefined && attempt.username !== id) return deny('bad_username');
  return { id, key: 'current' };
}

/**
 * Whether `deviceId` may publish `packet`: only on one of its own request topics, never retained, never QoS 2. `deviceId` is
 * `undefined` for a publish without a client, which is never a device's request.
 */
export function decidePublish(
  policy: AclPolicy,
  deviceId: string | undefined,
  packet: { readonly topic: string; readonly retain?: boolean; readonly qos?: number },
): Decision<PublishRefusal> {
  const { topic } = packet;
  if (topic.startsWith('$')) return deny('reserved');
  if (topic.includes('#') || topic.includes('+') || topic.includes('\0')) return deny('wildcard');
  if (packet.retain === true) return deny('retain');
  if (deviceId === undefined || policy.topics.parseRequest(topic)?.deviceId !== deviceId) {
    return deny('not_own_request');
  }
  // Requests are QoS 0 or 1 by contract. aedes cannot make QoS 2 exactly-once: it looks a packet id up before it
  // stores it and handles a whole socket read at once, so resent copies in one read were each handled (issue 10).
  if (packet.qos === 2) return deny('qos2');
  return ALLOW;
}

/** Whether `deviceId` may subscribe to `topic` (a filter): only exactly its own `res` topic. */
export function decideSubscribe(
  policy: AclPolicy,
  deviceId: string,
  topic: string,
): Decision<ResponseRefusal> {
  return topic === policy.topics.response(deviceId) ? ALLOW : deny('not_own_response');
}

/** Whether a message on `topic` may leave the broker towards `deviceId`: only when it is that device's `res`. */
export function decideForward(policy: AclPolicy, deviceId: string, topic: string): Decision<ResponseRefusal> {
  return topic === policy.topics.response(deviceId) ? ALLOW : deny('not_own_response');
}

/**
 * The audit trail: who authorized which device, from where, and what became of it. Each event is one info-level log
 * line whose `event` field is stable (operators filter on it), carrying the device id and — where known — the
 * upstream's subject (the person) and the network. Never a secret: no token, code, state or password has a field
 * here, and the logger's redaction stands behind that (./log.ts).
 */
import type { Logger } from 'pino';

/** Every audit event, in the order a device's life meets them (README "Operations" lists them). */
export const AUDIT_EVENTS = [
  'flow.started',
  'flow.approved',
  'flow.denied',
  'flow.expired',
  'token.delivered',
  'grant.refreshed',
  'grant.revoked',
  'device.revoked',
  'device.restored',
] as const;

export type AuditEvent = (typeof AUDIT_EVENTS)[number];

export interface AuditFields {
  deviceId: string;
  /** the flow's request id, for the flow events */
  rid?: string;
  /** the upstream's `sub` for the person, where the gateway saw an ID token */
  subject?: string;
  /**
   * where the act came from: the device's address on `flow.started`; the person's browser on a decision taken on
   * the gateway's page (bridge mode)
   */
  network?: string;
  /** `device` (relay) or `authorization_code` (bridge) */
  mode?: string;
  /** why, for events with more than one cause (the error code of a denial, why a grant was dropped) */
  reason?: string;
}

/** Writes the audit line of `event`. */
export function audit(log: Logger, event: AuditEvent, fields: AuditFields): void {
  log.info({ event, ...fields }, `audit ${event}`);
}

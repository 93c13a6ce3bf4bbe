/**
 * How the outcome page knows which device it is about: the redirect to `/device/done` carries `d`, the device's id
 * and reported name sealed (src/core/crypto.ts `Keys.seal`, AES-256-GCM) together with the result and an expiry.
 * Sealed rather than signed, so the name stays out of the browser's history in clear; bound to the result and short
 * lived, so a link cannot name a device on another outcome nor be passed around for long. A `d` that does not open,
 * belongs to another result or has expired is ignored: the page then names no device.
 */
import { z } from 'zod';
import type { Keys } from '../../core/crypto.ts';
import type { Flow } from '../../core/flow.ts';
import { type DoneDevice, RESULTS, type Result } from '../views/pages.ts';

/** What `d` seals; `x` is its expiry (ms since the epoch). */
const sealed = z.object({
  r: z.enum(RESULTS),
  id: z.string(),
  n: z.string().optional(),
  x: z.number(),
});

const AAD = 'devicegate done page';
/** How long a `d` names its device: enough to reload the page, not to keep the link. */
export const DONE_LINK_MS = 10 * 60_000;

/** `d` for the outcome `result` of `flow`'s device. */
export function sealDoneDevice(keys: Keys, result: Result, flow: Flow, now: number): string {
  const value: z.input<typeof sealed> = {
    r: result,
    id: flow.deviceId,
    ...(flow.device?.name !== undefined && { n: flow.device.name }),
    x: now + DONE_LINK_MS,
  };
  return keys.seal(JSON.stringify(value), AAD);
}

/** The device `d` names for `result`, or `undefined` when it does not open, is for another result or expired. */
export function openDoneDevice(keys: Keys, d: string, result: Result, now: number): DoneDevice | undefined {
  let value: z.output<typeof sealed>;
  try {
    value = sealed.parse(JSON.parse(keys.open(d, AAD)));
  } catch {
    return undefined;
  }
  if (value.r !== result || value.x <= now) return undefined;
  return { id: value.id, ...(value.n !== undefined && { name: value.n }) };
}

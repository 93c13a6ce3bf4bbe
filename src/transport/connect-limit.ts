/**
 * Connect flapping (issue 10: 300 CONNECTs in 1.4 s were all accepted): the embedded broker takes a CONNECT only while
 * both its client id and its remote address have attempts left. Each is a token bucket (the per-device request
 * throttle's, src/service/throttle.ts): a burst, then a steady rate; past it the CONNECT is refused with CONNACK 3
 * "server unavailable" (MQTT 3.1.1 has no "quota exceeded") and counted as
 * `devicegate_mqtt_refused_connects_total{reason="too_many_connects"}`. The address's budget is charged by every
 * attempt, before its credentials are checked; a client id's only by attempts whose credentials were good — otherwise
 * anyone could keep a device of their choice locked out by sending CONNECTs under its id.
 */
import { DeviceThrottle } from '../service/throttle.ts';

/** One client id: 10 CONNECTs at once, then one every 2 s — a device reconnecting with any backoff stays below it. */
export const CONNECTS_PER_DEVICE = { burst: 10, perSecond: 0.5 } as const;
/**
 * One remote address: 200 at once, then 20 per second — room for a fleet behind one NAT reconnecting after an
 * outage (refused devices retry with their backoff), not for one host cycling through ids.
 */
export const CONNECTS_PER_ADDRESS = { burst: 200, perSecond: 20 } as const;
/** Client ids and addresses remembered at most each (the least recently seen are forgotten first). */
const REMEMBERED = 100_000;

export class ConnectLimiter {
  readonly #byDevice = new DeviceThrottle({ ...CONNECTS_PER_DEVICE, maxDevices: REMEMBERED });
  readonly #byAddress = new DeviceThrottle({ ...CONNECTS_PER_ADDRESS, maxDevices: REMEMBERED });

  /** Counts one CONNECT from `address` at `now` (ms); whether the address was still within its limit. */
  allowAddress(address: string | undefined, now: number): boolean {
    return address === undefined || this.#byAddress.take(address, now) === 0;
  }

  /** Counts one authenticated CONNECT of `clientId` at `now` (ms); whether the id was still within its limit. */
  allowDevice(clientId: string, now: number): boolean {
    return this.#byDevice.take(clientId, now) === 0;
  }
}

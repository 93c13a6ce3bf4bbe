/**
 * Connect flapping (issue 10: 300 CONNECTs in 1.4 s were all accepted): the embedded broker takes a CONNECT only while
 * both its client id and its remote address have attempts left. Each is a token bucket (the per-device request
 * throttle's, src/service/throttle.ts): a burst, then a steady rate; past it the CONNECT is refused with CONNACK 3
 * "server unavailable" (MQTT 3.1.1 has no "quota exceeded") before its credentials are checked, and counted as
 * `devicegate_mqtt_refused_connects_total{reason="too_many_connects"}`. Every attempt counts, refused or not.
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

  /** Counts one CONNECT at `now` (ms); whether both its client id and its address were still within their limits. */
  allow(clientId: string, address: string | undefined, now: number): boolean {
    const byAddress = address === undefined ? 0 : this.#byAddress.take(address, now);
    const byDevice = this.#byDevice.take(clientId, now);
    return byAddress === 0 && byDevice === 0;
  }
}

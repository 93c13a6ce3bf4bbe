/**
 * Device revocation (docs/security.md). The revoked set lives in the store (on Redis it survives restarts and every
 * instance shares it); the admin API and `devicegate devices revoke` change it. What a revocation does:
 * - every instance hears it (`FlowStore.watchRevocations`) and closes the device's live connection on its embedded
 *   broker; the broker refuses the device's CONNECT from then on (src/transport/embedded.ts);
 * - every request of the device is answered `unauthorized_client` (src/service/dispatch.ts), which is what an
 *   external broker's devices see until the broker drops them too (docs/brokers.md);
 * - the device's kept refresh token is revoked at the upstream (RFC 7009) and deleted, and its pending flows end
 *   with `unauthorized_client`. Every instance that hears the change tries; the grant's take is atomic and a flow
 *   ends once (compare-and-set), so the work is done once however many instances run.
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { audit } from '../observability/audit.ts';
import type { FlowStore, RevocationChange, RevocationWatch } from '../store/types.ts';
import { REVOKED } from './dispatch.ts';
import type { GrantStore } from './grants.ts';
import { storeCall } from './store-call.ts';
import type { FlowUpdater } from './updater.ts';

/**
 * The revoked set as the operator changes it (the admin API, `devicegate devices …`): each change writes its audit
 * line, and the store tells every instance's {@link RevocationEnforcer}.
 */
export class RevokedDevices {
  readonly #store: FlowStore;
  readonly #log: Logger;

  constructor(deps: { store: FlowStore; log: Logger }) {
    this.#store = deps.store;
    this.#log = deps.log;
  }

  /** Revokes the device on every instance; returns whether it was not revoked before. */
  async revoke(deviceId: string): Promise<boolean> {
    const changed = await storeCall(() => this.#store.revokeDevice(deviceId));
    audit(this.#log, 'device.revoked', { deviceId });
    return changed;
  }

  /** Lets the device connect and ask again; returns whether it was revoked. */
  async restore(deviceId: string): Promise<boolean> {
    const changed = await storeCall(() => this.#store.restoreDevice(deviceId));
    audit(this.#log, 'device.restored', { deviceId });
    return changed;
  }

  list(): Promise<string[]> {
    return storeCall(() => this.#store.revokedDevices());
  }
}

export interface EnforcerDeps {
  store: FlowStore;
  grants: GrantStore;
  updater: FlowUpdater;
  clock: Clock;
  /** closes a device's live connection on this instance, where the transport owns the connections */
  disconnect: (deviceId: string) => void;
  log: Logger;
}

/** What one instance does when it hears of a revocation, made anywhere. */
export class RevocationEnforcer {
  readonly #d: EnforcerDeps;
  #watch: RevocationWatch | undefined;

  constructor(deps: EnforcerDeps) {
    this.#d = deps;
  }

  /** Starts hearing revocations made anywhere (this instance, another one, the command line). */
  async start(): Promise<void> {
    this.#watch = await this.#d.store.watchRevocations((change) => void this.#enforce(change));
  }

  async close(): Promise<void> {
    await this.#watch?.close();
    this.#watch = undefined;
  }

  /** Kicks the device here, then ends what it still holds. Never throws: a failure is logged. */
  async #enforce({ deviceId, revoked }: RevocationChange): Promise<void> {
    if (!revoked) return;
    this.#d.disconnect(deviceId);
    try {
      await this.#d.grants.dropRevoked(deviceId);
      const rids = await storeCall(() => this.#d.store.liveFlows(deviceId, this.#d.clock.now()));
      for (const rid of rids) {
        const event = { type: 'fail', code: 'unauthorized_client', description: REVOKED } as const;
        await this.#d.updater.update({ deviceId, rid, event });
      }
    } catch (err) {
      this.#d.log.warn({ deviceId, err }, 'a revoked device’s grant or flows could not be ended');
    }
  }
}

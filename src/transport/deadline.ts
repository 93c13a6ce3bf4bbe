/**
 * A deadline for a broker operation that may otherwise wait forever: a QoS 1 publish resolves on its PUBACK, and a
 * broker that stops acknowledging (overloaded, or a half-open connection before keepalive notices) would keep the
 * handler that awaits it — and its processing slot — taken for good.
 */

/**
 * Settles as `work` does, or rejects with `late()` once `ms` have passed first. `work` itself is not cancelled (the
 * MQTT client still completes or fails it); only the caller stops waiting for it.
 */
export function withDeadline<T>(work: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(late()), ms);
    timer.unref();
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

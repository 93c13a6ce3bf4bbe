/**
 * Binding listeners. A listener binds the port it is given (0: the OS picks one) and the caller reads the bound
 * port back from it — never "probe for a free port, close it, bind later", which races with every other process.
 * Only the demo may move to another port when its default one is taken, and it says so (docs/architecture.md,
 * "Ports").
 */
import type { AddressInfo, Server } from 'node:net';

/** Binds `server` to `host:port` and resolves with the bound port; rejects with the bind error (e.g. EADDRINUSE). */
export function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      // a TCP listener (host and port, never a pipe path) always has an AddressInfo
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** How a demo listener may move when its default port is taken. */
export interface PortFallback {
  /** how many following ports to try (port+1 … port+tries) before giving up */
  tries: number;
  /** told the port that was used instead of the wanted one, so the caller can say it out loud */
  onMoved(wanted: number, used: number): void;
}

/**
 * {@link listen}, and with `fallback`, on EADDRINUSE the next ports in turn. Each attempt is a real bind, so the port
 * it resolves with is held by `server`.
 */
export async function listenWithFallback(
  server: Server,
  host: string,
  port: number,
  fallback: PortFallback | undefined,
): Promise<number> {
  const last = fallback === undefined || port === 0 ? port : port + fallback.tries;
  for (let p = port; ; p++) {
    try {
      const bound = await listen(server, host, p);
      if (p !== port) fallback?.onMoved(port, bound);
      return bound;
    } catch (err) {
      if (p >= last || !isAddressInUse(err)) throw err;
    }
  }
}

function isAddressInUse(err: unknown): boolean {
  return err instanceof Error && 'code' in err && err.code === 'EADDRINUSE';
}

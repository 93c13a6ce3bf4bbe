/**
 * Which address the demo advertises, so that a phone on the same network can finish the flow: the page, the QR code,
 * the verification URIs and the demo identity provider all use it. A pure function of the machine's interfaces (as
 * `os.networkInterfaces()` lists them) and the settings, so the choice is testable without a second machine.
 */
import type { NetworkInterfaceInfo } from 'node:os';

export interface DemoAddress {
  /** the host the demo advertises: a LAN IPv4 address, `DEVICEGATE_PUBLIC_URL`'s host, or `localhost` */
  readonly host: string;
  /** true when `host` is a LAN address (the demo listeners then bind it instead of loopback) */
  readonly lan: boolean;
  /** why, in words for the banner and the log */
  readonly reason: string;
}

export interface DemoAddressSettings {
  /** `DEVICEGATE_PUBLIC_URL`: the operator's choice wins over any detection */
  readonly publicUrl: string | undefined;
  /** `DEVICEGATE_DEMO_LAN`: false keeps the demo on localhost */
  readonly lan: boolean;
  /** `DEVICEGATE_HTTP_PORT`: 0 leaves no port for the advertised URL before the server is bound */
  readonly httpPort: number;
}

type Interfaces = Readonly<Record<string, readonly NetworkInterfaceInfo[] | undefined>>;

/**
 * The first non-internal IPv4 address, preferring the private ranges (RFC 1918) a home or office network uses over a
 * public one. Link-local (169.254/16) is skipped: it is what an interface gets when no network answered. Node lists
 * only interfaces that are up and running (libuv's `uv_interface_addresses`), so a down interface never shows here.
 */
export function chooseDemoAddress(interfaces: Interfaces, s: DemoAddressSettings): DemoAddress {
  if (s.publicUrl !== undefined) return local('DEVICEGATE_PUBLIC_URL is set', new URL(s.publicUrl).hostname);
  if (!s.lan) return local('DEVICEGATE_DEMO_LAN=false');
  if (s.httpPort === 0) return local('DEVICEGATE_HTTP_PORT=0: a LAN URL needs the port before it is bound');
  const candidates = Object.entries(interfaces).flatMap(([name, infos]) =>
    (infos ?? [])
      .filter((i) => i.family === 'IPv4' && !i.internal && !i.address.startsWith('169.254.'))
      .map((i) => ({ name, address: i.address })),
  );
  const chosen = candidates.find((c) => isPrivateIPv4(c.address)) ?? candidates[0];
  if (chosen === undefined) return local('no network address besides loopback was found');
  const kind = isPrivateIPv4(chosen.address) ? 'private' : 'non-loopback (no private one found)';
  return {
    host: chosen.address,
    lan: true,
    reason: `the first ${kind} IPv4 address, on ${chosen.name}; DEVICEGATE_DEMO_LAN=false keeps the demo on localhost`,
  };
}

function local(reason: string, host = 'localhost'): DemoAddress {
  return { host, lan: false, reason };
}

/** 10/8, 172.16/12, 192.168/16 (RFC 1918). */
function isPrivateIPv4(address: string): boolean {
  const [a, b] = address.split('.').map(Number);
  return a === 10 || (a === 172 && b !== undefined && b >= 16 && b <= 31) || (a === 192 && b === 168);
}

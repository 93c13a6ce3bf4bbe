/**
 * The demo: with no upstream configured (and never in production, which `loadConfig` refuses), `npm start` runs the
 * built-in identity provider beside the gateway and points the gateway at it. Demo ports may move when their default
 * is taken (this machine's own Mosquitto holds 1883, for one); every move is said out loud.
 */
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { PortFallback } from '../net/listen.ts';
import { type DemoIdp, startDemoIdp } from './idp.ts';
import { type DemoAddress, chooseDemoAddress } from './lan.ts';

/** How many ports after a taken default the demo tries. */
const FALLBACK_TRIES = 10;

export interface Demo {
  readonly idp: DemoIdp;
  /** the upstream settings the gateway is built with */
  readonly upstream: { issuer: string; clientId: string; clientSecret: string };
  /** lets the embedded broker move off its taken default port (not off a port the environment chose) */
  readonly mqttPortFallback: PortFallback | undefined;
  /** what moved where, for the banner */
  readonly moves: readonly string[];
  close(): Promise<void>;
}

/**
 * The demo's config: on a LAN address (./lan.ts) the HTTP server, the demo identity provider (which binds the HTTP
 * host) and the embedded broker bind it, and the public URL names it, so the page, the QR code and the identity
 * provider's issuer all work from a phone on the same network. Says which address and why in one log line.
 */
export function demoConfig(config: Config, log: Logger): { config: Config; address: DemoAddress } {
  const address = chooseDemoAddress(networkInterfaces(), {
    publicUrl: config.publicUrl,
    lan: config.demoLan,
    httpPort: config.http.port,
  });
  log.info({ host: address.host, lan: address.lan }, `demo address ${address.host}: ${address.reason}`);
  if (!address.lan) return { config, address };
  return {
    address,
    config: {
      ...config,
      publicUrl: `http://${address.host}:${config.http.port}`,
      http: { ...config.http, host: address.host },
      mqtt: config.mqtt.kind === 'embedded' ? { ...config.mqtt, host: address.host } : config.mqtt,
    },
  };
}

/** Starts the demo identity provider for a gateway whose public URL will be `publicUrl`. */
export async function startDemo(config: Config, publicUrl: string, log: Logger): Promise<Demo> {
  const moves: string[] = [];
  const fallback = (what: string): PortFallback => ({
    tries: FALLBACK_TRIES,
    onMoved(wanted, used) {
      moves.push(`${what}: port ${wanted} is in use, using ${used}`);
      log.warn({ wanted, used }, `${what}: port ${wanted} is in use, using ${used}`);
    },
  });
  const idp = await startDemoIdp({
    host: config.http.host,
    port: config.demoPort,
    portFallback: fallback('demo identity provider'),
    redirectUris: [`${publicUrl}/oauth/callback`],
    deviceFlow: true,
    log: log.child({ component: 'demo-idp' }),
  });
  return {
    idp,
    upstream: { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret },
    mqttPortFallback:
      config.mqtt.kind === 'embedded' && config.mqtt.portIsDefault
        ? fallback('embedded MQTT broker')
        : undefined,
    moves,
    close: () => idp.close(),
  };
}

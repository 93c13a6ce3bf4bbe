/**
 * The device transport the config asks for: the embedded aedes broker, or a client of an external broker. Built
 * before the flow service (which publishes replies through it) and started after it (requests go to the service).
 */
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { Keys } from '../core/crypto.ts';
import type { PortFallback } from '../net/listen.ts';
import type { Metrics } from '../observability/metrics.ts';
import { redactUrl } from '../observability/redact.ts';
import { EmbeddedBroker } from '../transport/embedded.ts';
import { ExternalBroker } from '../transport/external.ts';
import { topics } from '../transport/topics.ts';
import type { DeviceTransport } from '../transport/types.ts';
import type { WebSocketDeviceHandler } from '../web/mqtt-websocket.ts';

/** A transport, and where devices reach it (known once it has started). */
export interface BuiltTransport {
  transport: DeviceTransport;
  /** `mqtt://host:port` of the embedded broker (its bound port), or the external broker's URL without credentials */
  url(): string;
  /** the embedded broker's TLS listener as `mqtts://host:port` (its bound port); undefined without one */
  tlsUrl?(): string | undefined;
  /** the embedded broker: serves devices that connect over WebSocket at the HTTP server's `/mqtt` */
  websocket?: WebSocketDeviceHandler;
  /** the embedded broker: reads its TLS files again for new connections (SIGHUP); false when nothing was reloaded */
  reloadTls?(): boolean;
}

export interface TransportDeps {
  config: Config;
  keys: Keys;
  deviceKey: string;
  /** whether a device is revoked (the embedded broker refuses its CONNECT) */
  isRevoked: (deviceId: string) => Promise<boolean>;
  log: Logger;
  metrics: Metrics;
  /** the demo only: the embedded broker may move off a taken default port */
  portFallback?: PortFallback | undefined;
}

export function buildTransport(d: TransportDeps): BuiltTransport {
  const { config } = d;
  const t = topics(config.topicPrefix);
  const log = d.log.child({ component: 'mqtt' });
  if (config.mqtt.kind === 'embedded') {
    const { host, tls } = config.mqtt;
    const broker = new EmbeddedBroker({
      host,
      port: config.mqtt.port,
      maxPacketSize: config.mqtt.maxPacketSize,
      portFallback: d.portFallback,
      tls,
      topics: t,
      deviceAuth: config.deviceAuth,
      deviceKey: d.deviceKey,
      ...(config.previousDeviceKey !== undefined && { previousDeviceKey: config.previousDeviceKey }),
      isRevoked: d.isRevoked,
      log,
      metrics: d.metrics,
    });
    return {
      transport: broker,
      url: () => `mqtt://${displayHost(host)}:${broker.port}`,
      tlsUrl: () => (tls === undefined ? undefined : `mqtts://${displayHost(tls.host)}:${broker.tlsPort}`),
      websocket: (stream, req) => broker.handleWebSocket(stream, req),
      reloadTls: () => broker.reloadTls(),
    };
  }
  const { url, username, password, clientId, protocolVersion, sharedSubscription, keepaliveSeconds } =
    config.mqtt;
  const broker = new ExternalBroker({
    url,
    ...(username !== undefined && { username }),
    ...(password !== undefined && { password }),
    ...(clientId !== undefined && { clientId }),
    // The same on every instance (they share the secret) and unknown to devices: see transport/external.ts.
    shareGroup: `devicegate-${d.keys.lookupHash('mqtt-share-group', config.topicPrefix).slice(0, 24)}`,
    shared: sharedSubscription,
    topics: t,
    log,
    metrics: d.metrics,
    protocolVersion,
    keepaliveSeconds,
  });
  return { transport: broker, url: () => redactUrl(url) };
}

/** A host as people type it into a URL: wildcards as `localhost`, IPv6 in brackets. */
export function displayHost(host: string): string {
  return host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
}

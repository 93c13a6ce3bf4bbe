/**
 * MQTT over WebSocket at `GET /mqtt` (the embedded broker only): each upgraded connection becomes a byte stream the
 * broker serves like a TCP socket, with the same authentication and ACL. Registered at the app's root, outside the
 * pages' scope, so their headers, CSRF checks and flood guard never see the upgrade.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import { createWebSocketStream } from 'ws';

/** Where devices connect over WebSocket (the path mqtt.js, Paho and most MQTT WebSocket clients use). */
export const MQTT_WEBSOCKET_PATH = '/mqtt';

/** Hands one device's connection to the broker: its MQTT byte stream and the upgrade request. */
export type WebSocketDeviceHandler = (stream: Duplex, req: IncomingMessage) => void;

/**
 * An upgrade request to any other path is answered like a plain request (the page, or 404) on a socket that Node's
 * HTTP server has handed over and no longer manages: half-open, it would stay until the process ends and hold
 * `close()` up. Once such an answer is written, the socket is ended, then destroyed. Call it on the app's root.
 */
export function endAnsweredUpgrades(app: FastifyInstance): void {
  app.addHook('onResponse', async (request) => {
    const { socket, headers } = request.raw;
    if (headers.upgrade === undefined || !/\bupgrade\b/i.test(headers.connection ?? '')) return;
    socket.end(() => socket.destroy());
  });
}

/**
 * Registers the WebSocket support and the `/mqtt` route. `maxPayload` bounds one WebSocket message (ws closes the
 * connection above it); the broker's frame guard then bounds each MQTT packet as on TCP.
 */
export async function mqttWebSocket(
  app: FastifyInstance,
  o: { handler: WebSocketDeviceHandler; maxPayload: number },
): Promise<void> {
  await app.register(websocket, { options: { maxPayload: o.maxPayload } });
  app.get(MQTT_WEBSOCKET_PATH, { websocket: true }, (socket, req) => {
    o.handler(createWebSocketStream(socket), req.raw);
  });
}

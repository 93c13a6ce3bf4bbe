/** What `npm start` prints in the demo (to stderr): where everything listens and how to try it. */
import type { Demo } from '../demo/launch.ts';
import type { DemoAddress } from '../demo/lan.ts';
import type { Addresses, Gateway } from '../gateway/index.ts';

export function banner(g: Gateway, at: Addresses, demo: Demo, address: DemoAddress): string {
  const lines = [
    '',
    '  devicegate is running',
    '',
    `  devices (MQTT)     ${at.mqttUrl}   topics ${g.config.topicPrefix}/{deviceId}/req/+ and /res`,
    ...(at.mqttTlsUrl === undefined ? [] : [`  devices (TLS)      ${at.mqttTlsUrl}`]),
    ...(at.mqttWsUrl === undefined ? [] : [`  devices (WS)       ${at.mqttWsUrl}`]),
    `  web                ${at.publicUrl}/device   (health ${at.httpUrl}/healthz, ${at.httpUrl}/readyz, ${at.httpUrl}/metrics)`,
    `  upstream           ${g.upstreamIssuer}   (${g.config.mode === 'device' ? 'relay: RFC 8628 device endpoint' : 'bridge: authorization code + PKCE'})`,
    '',
    '  ************************************************************************',
    '  *  DEMO MODE - a built-in identity provider with a demo user.           *',
    '  *  Not for production: set DEVICEGATE_UPSTREAM_ISSUER to a real one.     *',
    '  ************************************************************************',
    '',
    `  demo user          ${demo.idp.username} / ${demo.idp.password}`,
    `  address            ${address.host}: ${address.reason}`,
    ...demo.moves.map((m) => `  note               ${m}`),
    '',
    '  Try it: in a second terminal run',
    '',
    '      npm run sim -- --id tv-1',
    '',
    `  then open the URL it prints (or scan its QR code${address.lan ? ' with a phone on this network' : ''}) and sign in as the demo user.`,
    '',
  ];
  return `${lines.join('\n')}\n`;
}
